// Live updates: one server-sent event stream tells when anything about runs changed; the page
// then fetches its own content again (never while a form field on it has the focus).
(function () {
  "use strict";
  var main = document.getElementById("main");
  if (!main || !main.dataset.live || !window.EventSource) return;
  var state = document.getElementById("live-state");
  var pending = false, last = 0;

  function editing() {
    var active = document.activeElement;
    return active && main.contains(active) && /INPUT|SELECT|TEXTAREA/.test(active.tagName);
  }

  function refresh() {
    if (pending) return;
    if (editing()) { setTimeout(refresh, 1000); return; }
    var wait = Math.max(0, 1000 - (Date.now() - last));
    pending = true;
    setTimeout(function () {
      last = Date.now();
      fetch(window.location.href, { headers: { "X-Fragment": "1" }, credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) {
          pending = false;
          if (html !== null && !editing()) { main.innerHTML = html; }
        })
        .catch(function () { pending = false; });
    }, wait);
  }

  var source = new EventSource("/api/v1/events");
  source.addEventListener("changed", function () { refresh(); });
  source.onopen = function () { if (state) state.textContent = "live"; };
  source.onerror = function () { if (state) state.textContent = "reconnecting…"; };
})();
