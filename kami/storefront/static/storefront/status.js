// Live order status, for pages that wait on an order. Without JS the order page falls back to
// its <noscript> meta refresh and the QR page to its link.
//  - order page: #status[data-status-url][data-follow]; the server puts data-follow (seconds)
//    only while the order waits on something that changes by itself (kami/storefront/follow.py);
//    the token/sig is this page's own query string; a change reloads the page, keys and all.
//  - QR page: #order-link; its path + "/status" with the same query is the status URL (asked every
//    3 s), and #pay-deadline[data-expires] drives a countdown.
// A tab left open for hours must not hammer the server: the next ask is set only once the last one
// answered (a slow server is never asked twice at once); after STEADY_MS on the page each wait is
// GROWTH times the last, up to CAP_MS; a hidden tab does not ask, and asks at once when shown
// again; a 4xx answer (the link expired, the order is gone) stops asking, but 429 doubles the wait.
(function () {
  if (!window.fetch) return;
  var STEADY_MS = 10 * 60 * 1000, GROWTH = 1.5, CAP_MS = 5 * 60 * 1000;
  var statusEl = document.getElementById("status");
  var orderLink = document.getElementById("order-link");
  var statusUrl, onChange, current = "pending", delay = 3000;
  if (statusEl && statusEl.getAttribute("data-status-url") && statusEl.getAttribute("data-follow")) {
    current = statusEl.getAttribute("data-status");
    delay = 1000 * parseFloat(statusEl.getAttribute("data-follow")) || delay;
    statusUrl = statusEl.getAttribute("data-status-url") + window.location.search;
    onChange = function () { window.location.reload(); };
  } else if (orderLink) {
    var target = new URL(orderLink.getAttribute("href"), window.location.href);
    statusUrl = target.pathname + "/status" + target.search;
    onChange = function () { window.location.assign(target.pathname + target.search); };
  } else {
    return;
  }
  var started = Date.now(), asking = false, due = false, stopped = false;
  var later = function () {
    if (Date.now() - started >= STEADY_MS) delay = Math.min(CAP_MS, delay * GROWTH);
    setTimeout(ask, delay);
  };
  var ask = function () {
    if (document.hidden) { due = true; return; }
    due = false;
    asking = true;
    fetch(statusUrl, { headers: { Accept: "application/json" }, cache: "no-store" })
      .then(function (r) {
        if (r.status === 429) delay = Math.min(CAP_MS, delay * 2);  // told to slow down
        else if (r.status >= 400 && r.status < 500) stopped = true;
        return r.ok ? r.json() : null;
      })
      .then(function (data) {
        if (data && data.status && data.status !== current) { stopped = true; onChange(); }
      })
      .catch(function () {})
      .then(function () { asking = false; if (!stopped) later(); });
  };
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden && due && !asking && !stopped) ask();
  });
  setTimeout(ask, delay);

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
