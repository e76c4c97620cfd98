// Product page: re-check stock every 15 s and stop the buy button when the product sells out.
// Without JS the server-rendered state stands; the `buy` view refuses a sold-out order anyway.
(function () {
  var form = document.getElementById("buy-form");
  if (!form || !window.fetch) return;
  var button = form.querySelector("button[type=submit]");
  var note = document.getElementById("soldout-note");
  var hasGateway = form.querySelector("input[name=gateway]") !== null;
  function apply(stock) {
    button.disabled = !stock.available || !hasGateway;
    if (note) note.hidden = stock.available;
  }
  function check() {
    fetch(form.getAttribute("data-stock-url"), { headers: { Accept: "application/json" }, cache: "no-store" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (stock) { if (stock) apply(stock); })
      .catch(function () {});
  }
  setInterval(check, 15000);
})();
