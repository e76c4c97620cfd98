document.addEventListener("click", function (event) {
  var button = event.target.closest("button.copy");
  if (!button) return;
  var text = button.getAttribute("data-copy");
  var done = function () { var label = button.textContent; button.textContent = "✓"; setTimeout(function () { button.textContent = label; }, 1200); };
  if (navigator.clipboard && window.isSecureContext) { navigator.clipboard.writeText(text).then(done); return; }
  var area = document.createElement("textarea"); area.value = text; document.body.appendChild(area); area.select();
  try { document.execCommand("copy"); done(); } finally { document.body.removeChild(area); }
});
