// Live updates: one server-sent event stream tells when anything about runs changed; the page
// then fetches its own content again (never while a form field on it has the focus). A change
// told while a fetch is under way may not be in what that fetch returns: the page fetches once
// more after it. After the stream reconnects, the page fetches too (what changed meanwhile was
// told to nobody).
(function () {
  "use strict";
  var main = document.getElementById("main");
  if (!main || !main.dataset.live || !window.EventSource) return;
  var state = document.getElementById("live-state");
  var pending = false, again = false, opened = false, last = 0;

  function editing() {
    var active = document.activeElement;
    return active && main.contains(active) && /INPUT|SELECT|TEXTAREA/.test(active.tagName);
  }

  function done() {
    pending = false;
    if (again) { again = false; refresh(); }
  }

  function refresh() {
    if (pending) { again = true; return; }
    if (editing()) { setTimeout(refresh, 1000); return; }
    var wait = Math.max(0, 1000 - (Date.now() - last));
    pending = true;
    setTimeout(function () {
      last = Date.now();
      again = false;  // what changed until now is in what this fetch returns
      fetch(window.location.href, { headers: { "X-Fragment": "1" }, credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) {
          if (html !== null) {
            if (editing()) { again = true; } else { main.innerHTML = html; }
          }
          done();
        })
        .catch(done);
    }, wait);
  }

  var source = new EventSource("/api/v1/events");
  source.addEventListener("changed", function () { refresh(); });
  source.onopen = function () {
    if (state) state.textContent = "live";
    if (opened) refresh();  // reconnected: catch up with what was told meanwhile
    opened = true;
  };
  source.onerror = function () { if (state) state.textContent = "reconnecting…"; };
})();
