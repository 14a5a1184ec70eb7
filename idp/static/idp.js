/* Page glue for the U.S. Web Design System components (loaded after uswds.min.js on every
 * provider page). No inline script (CSP script-src 'self'), no inline style.
 *
 * - [hidden].idp-js-only: controls that need JavaScript (the show-password toggle) are
 *   shown only when this script runs.
 * - Confirmations: a submit button with data-open-modal and aria-controls="<modal id>"
 *   opens that USWDS modal instead of submitting (once its form is valid); the modal's button with
 *   data-confirm-for="<button id>" then submits that button's own form (so its fields,
 *   such as a reason, go too) with confirm=yes. Without JavaScript, or if the modal was
 *   not set up, the button submits without confirm=yes and the server shows a
 *   confirmation page. */
(function () {
  "use strict";

  function modalReady(id) {
    // USWDS moves the id onto the wrapper it builds around a modal it has set up.
    var el = id && document.getElementById(id);
    return !!(el && el.classList.contains("usa-modal-wrapper"));
  }

  // Capture phase, before USWDS's own listener on the button: a form that the browser
  // would refuse (an empty required reason) is not confirmed; the press goes on as a
  // plain submit, so the browser says what is missing and no dialog opens.
  document.addEventListener("click", function (ev) {
    var target = ev.target;
    if (!(target instanceof Element)) return;
    var opener = target.closest("button[data-open-modal][aria-controls]");
    if (!opener || opener.type !== "submit" || !modalReady(opener.getAttribute("aria-controls"))) return;
    if (opener.form && !opener.form.noValidate && !opener.form.checkValidity()) {
      ev.stopPropagation();
      return;
    }
    ev.preventDefault();
  }, true);

  document.addEventListener("click", function (ev) {
    var target = ev.target;
    if (!(target instanceof Element)) return;
    var yes = target.closest("[data-confirm-for]");
    if (!yes) return;
    var button = document.getElementById(yes.getAttribute("data-confirm-for"));
    var form = button && button.form;
    if (!form) return;
    var field = form.querySelector('input[name="confirm"][data-confirm-field]');
    if (!field) {
      field = document.createElement("input");
      field.type = "hidden";
      field.name = "confirm";
      field.setAttribute("data-confirm-field", "");
      form.appendChild(field);
    }
    field.value = "yes";
    if (form.requestSubmit) form.requestSubmit(button);
    else {
      var copy = document.createElement("input");
      copy.type = "hidden";
      copy.name = button.name;
      copy.value = button.value;
      form.appendChild(copy);
      form.submit();
    }
  });

  // Back from the history cache: a confirmation must be given again.
  window.addEventListener("pageshow", function () {
    document.querySelectorAll('input[name="confirm"][data-confirm-field]').forEach(function (f) {
      f.value = "";
    });
  });

  function ready() {
    document.querySelectorAll(".idp-js-only[hidden]").forEach(function (el) {
      el.hidden = false;
    });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", ready);
  else ready();
})();
