/* Push approval pages. No inline script (CSP script-src 'self'): everything comes from
 * data attributes, and without JavaScript the same forms work by hand.
 *
 * - form[data-push-wait]: polls data-status-url; submits the form ("I approved it,
 *   continue") once the request is approved, and reloads data-reload-url when it was
 *   denied, timed out or replaced, so the server shows why.
 * - form[data-push-autosubmit]: an approval already known when the page was rendered.
 * - form[data-push-enroll]: polls data-status-url until the app has registered, then
 *   submits the form ("I added the app, continue"); reloads when the code expired. */
(function () {
  "use strict";

  var EVERY = 1500;

  function poll(url, onStatus) {
    function tick() {
      fetch(url, { credentials: "same-origin", cache: "no-store", headers: { "Accept": "application/json" } })
        .then(function (resp) { return resp.json(); })
        .then(function (body) {
          if (onStatus(body.status, body)) setTimeout(tick, EVERY);
        })
        .catch(function () { setTimeout(tick, EVERY * 2); });
    }
    setTimeout(tick, EVERY);
  }

  // The words come from the page, in its language (data-* attributes); English otherwise.
  function text(el, name, fallback) {
    return (el && el.getAttribute(name)) || fallback;
  }

  function watchChallenge(form) {
    var countdown = document.querySelector("[data-push-countdown]");
    var status = document.querySelector("[data-push-status]");
    poll(form.getAttribute("data-status-url"), function (state, body) {
      if (state === "pending") {
        if (countdown && typeof body.expires_in === "number") {
          var left = body.expires_in === 1
            ? text(countdown, "data-left-one", "({n} second left)")
            : text(countdown, "data-left-other", "({n} seconds left)");
          countdown.textContent = " " + left.replace("{n}", String(body.expires_in));
        }
        return true;
      }
      if (state === "approved") {
        if (status) status.textContent = text(status, "data-approved-text", "Approved in the app. Signing you in.");
        form.submit();
        return false;
      }
      window.location.replace(form.getAttribute("data-reload-url"));
      return false;
    });
  }

  function watchEnrollment(form) {
    var status = document.querySelector("[data-push-enroll-status]");
    poll(form.getAttribute("data-status-url"), function (state) {
      if (state === "waiting") return true;
      if (state === "enrolled") {
        if (status) status.textContent = text(status, "data-done-text", "The app is registered. Finishing the set-up.");
        form.submit();
        return false;
      }
      window.location.reload();
      return false;
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var wait = document.querySelector("form[data-push-wait]");
    if (wait) watchChallenge(wait);
    var approved = document.querySelector("form[data-push-autosubmit]");
    if (approved) approved.submit();
    var enroll = document.querySelector("form[data-push-enroll]");
    if (enroll) watchEnrollment(enroll);
  });
})();
