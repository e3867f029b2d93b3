// The login page asks this program every 2 s whether the USB key is
// inserted, locked or unlocked, and reloads when that changes. Nothing else
// runs script: every page works without it.
(function () {
  'use strict';
  var box = document.getElementById('login');
  if (!box || !window.fetch) {
    return;
  }
  var state = box.getAttribute('data-state');
  var text = document.getElementById('key-state');
  function poll() {
    fetch('/status', { credentials: 'same-origin', cache: 'no-store', headers: { Accept: 'application/json' } })
      .then(function (r) {
        if (!r.ok) {
          throw new Error('status ' + r.status);
        }
        return r.json();
      })
      .then(function (s) {
        if (s.state !== state) {
          // replace, not reload: this page may be the answer to a POST.
          window.location.replace('/login');
          return;
        }
        if (text) {
          text.textContent = s.text;
        }
      })
      .catch(function () {})
      .then(function () {
        window.setTimeout(poll, 2000);
      });
  }
  window.setTimeout(poll, 2000);
})();
