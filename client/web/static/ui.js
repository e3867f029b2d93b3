// The login page asks this program every 2 s whether the USB key is
// inserted, locked or unlocked, and reloads when that changes; the load's
// confirmation page counts down to its expiry. Nothing else runs script:
// every page works without it (the expiry is enforced by the program).
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

(function () {
  'use strict';
  var counter = document.getElementById('countdown');
  if (!counter) {
    return;
  }
  var page = document.getElementById('load-confirm-page');
  var button = document.getElementById('load-confirm');
  var expired = document.getElementById('confirm-expired');
  var end = Date.now() + 1000 * parseInt(counter.getAttribute('data-seconds'), 10);
  function tick() {
    var left = Math.max(0, Math.ceil((end - Date.now()) / 1000));
    counter.textContent = String(left);
    if (left > 0) {
      window.setTimeout(tick, 250);
      return;
    }
    page.setAttribute('data-state', 'expired');
    if (button) {
      button.disabled = true;
    }
    if (expired) {
      expired.hidden = false;
    }
  }
  tick();
})();
