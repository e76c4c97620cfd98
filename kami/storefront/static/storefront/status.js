// Live order status, for pages that wait on a payment. Without JS the order page falls back to
// its <noscript> meta refresh and the QR page to its link.
//  - order page: #status[data-status-url]; the token/sig is this page's own query string.
//  - QR page: #order-link; its path + "/status" with the same query is the status URL, and
//    #pay-deadline[data-expires] drives a countdown.
(function () {
  if (!window.fetch) return;
  var statusEl = document.getElementById("status");
  var orderLink = document.getElementById("order-link");
  var statusUrl, onChange, current = "pending";
  if (statusEl && statusEl.getAttribute("data-status-url")) {
    current = statusEl.getAttribute("data-status");
    statusUrl = statusEl.getAttribute("data-status-url") + window.location.search;
    onChange = function () { window.location.reload(); };
  } else if (orderLink) {
    var target = new URL(orderLink.getAttribute("href"), window.location.href);
    statusUrl = target.pathname + "/status" + target.search;
    onChange = function () { window.location.assign(target.pathname + target.search); };
  } else {
    return;
  }
  var timer = setInterval(function () {
    fetch(statusUrl, { headers: { Accept: "application/json" }, cache: "no-store" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) {
        if (data && data.status && data.status !== current) { clearInterval(timer); onChange(); }
      })
      .catch(function () {});
  }, 3000);

  var deadline = document.getElementById("pay-deadline");
  var countdown = document.getElementById("countdown");
  if (deadline && countdown) {
    var expires = Date.parse(deadline.getAttribute("data-expires"));
    var tick = function () {
      var left = Math.max(0, Math.floor((expires - Date.now()) / 1000));
      var m = Math.floor(left / 60), s = left % 60;
      countdown.textContent = m + ":" + (s < 10 ? "0" : "") + s;
      if (left === 0) clearInterval(ticker);
    };
    var ticker = setInterval(tick, 1000);
    tick();
  }
})();
