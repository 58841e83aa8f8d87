// metrics-worker dashboard: new detections appear without a reload. The server says when this worker stored
// detections (server-sent events at /ui/events); the page then fetches the new rows, rendered by the server's own
// template, from /ui/rows. It also looks every 10 s, for detections other workers stored in a shared database.
(function () {
  'use strict';
  var MAX_ROWS = 500;
  var body = document.getElementById('rows');
  var status = document.getElementById('live');
  var count = document.getElementById('count');
  if (!body) { return; }

  function setStatus(state) {
    status.dataset.state = state;
    status.textContent = state;
  }

  function newest() {
    var latest = '';
    var rows = body.querySelectorAll('tr[data-detected]');
    for (var i = 0; i < rows.length; i++) {
      var t = rows[i].dataset.detected;
      if (t > latest) { latest = t; }
    }
    return latest;
  }

  var busy = false;
  var again = false;
  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    var q = new URLSearchParams();
    if (body.dataset.series) { q.set('series', body.dataset.series); }
    if (body.dataset.method) { q.set('method', body.dataset.method); }
    var since = newest();
    if (since) { q.set('since', since); }
    var total = null;
    // A redirection means the session ended (sent to /login): say so rather than show an empty "live" page.
    fetch('/ui/rows?' + q.toString(), { credentials: 'same-origin', redirect: 'manual' })
      .then(function (r) {
        if (r.type === 'opaqueredirect' || r.status === 401) { throw new Error('signed out'); }
        if (!r.ok) { throw new Error('HTTP ' + r.status); }
        total = r.headers.get('X-Detections');
        return r.text();
      })
      .then(function (html) {
        var t = document.createElement('template');
        t.innerHTML = html;
        var fresh = Array.prototype.filter.call(t.content.querySelectorAll('tr[data-id]'), function (tr) {
          return !document.getElementById('row-' + tr.dataset.id);
        });
        // The server sends newest first: insert oldest first at the top.
        for (var i = fresh.length - 1; i >= 0; i--) {
          fresh[i].classList.add('new');
          body.insertBefore(fresh[i], body.firstChild);
        }
        if (total !== null) {
          count.textContent = total;
        } else if (fresh.length) {
          count.textContent = String(Number(count.textContent) + fresh.length);
        }
        if (fresh.length) {
          var empty = document.getElementById('empty');
          if (empty) { empty.remove(); }
          setTimeout(function () {
            fresh.forEach(function (tr) { tr.classList.remove('new'); });
          }, 4000);
        }
        while (body.rows.length > MAX_ROWS) { body.deleteRow(body.rows.length - 1); }
        if (status.dataset.state === 'error') { setStatus('live'); }
      })
      .catch(function (e) { setStatus(e && e.message === 'signed out' ? 'signed out' : 'error'); })
      .then(function () {
        busy = false;
        if (again) { again = false; refresh(); }
      });
  }

  if (window.EventSource) {
    var events = new EventSource('/ui/events');
    events.addEventListener('changed', refresh);
    events.onopen = function () { setStatus('live'); refresh(); };
    events.onerror = function () { setStatus('reconnecting'); };
  } else {
    setStatus('polling');
  }
  setInterval(refresh, 10000);
})();
