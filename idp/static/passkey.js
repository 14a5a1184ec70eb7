/* A sign-in with a passkey alone (the sign-in page), and the passkey offer page.
 *
 * Sign-in page: <div data-passkey-signin data-options-url="..." data-msg-...="..."> is
 * hidden until this script finds WebAuthn, so without JavaScript (or WebAuthn) the page
 * is the email and password form alone. It holds a <form> with hidden inputs (csrf_token,
 * txn, next), an <input type="hidden" name="credential">, a [data-webauthn-status] line
 * (in a [data-webauthn-alert] box) and a [data-passkey-button].
 *
 * - Autofill: when the browser can list passkeys in the email field's suggestions
 *   (PublicKeyCredential.isConditionalMediationAvailable(); the field's autocomplete is
 *   "username webauthn"), a conditional request (mediation "conditional", WebAuthn L3)
 *   starts as the page opens and waits until the user picks a passkey there.
 * - The button, for browsers without autofill: the autofill request is aborted and the
 *   browser's own passkey dialog opens.
 *
 * Either way the options come from the provider (a POST of the hidden inputs: the page's
 * CSRF token and its sign-in, to which the single-use challenge is bound), then
 * navigator.credentials.get() runs and the form posts its JSON result. The messages come
 * from the page (data-msg-*), in the page's language.
 *
 * Offer page: in a browser without WebAuthn, [data-webauthn-required] controls are turned
 * off and [data-webauthn-unsupported] notes shown.
 *
 * Uses window.idpWebAuthn (webauthn.js, loaded first). No inline script (CSP
 * script-src 'self'). */
(function () {
  "use strict";

  function supported() {
    return !!(window.PublicKeyCredential && navigator.credentials && window.idpWebAuthn);
  }

  function signin(box) {
    var lib = window.idpWebAuthn;
    var form = box.querySelector("form");
    var field = form && form.querySelector('input[name="credential"]');
    var button = box.querySelector("[data-passkey-button]");
    var status = box.querySelector("[data-webauthn-status]");
    var alertBox = box.querySelector("[data-webauthn-alert]");
    var url = box.getAttribute("data-options-url");
    var autofilling = null; // the AbortController of the pending autofill request
    var sent = false;
    if (!form || !field || !button || !url) return;

    function say(text) {
      // An alert only while there is something to say (an empty one is noise to
      // assistive technology); inserting the role with the text announces it.
      if (status) {
        if (text) status.setAttribute("role", "alert");
        else status.removeAttribute("role");
        status.textContent = text || "";
      }
      if (alertBox) ["usa-alert", "usa-alert--error", "usa-alert--slim"].forEach(function (c) {
        alertBox.classList.toggle(c, !!text);
      });
    }

    function message(name) {
      return box.getAttribute("data-msg-" + name) || box.getAttribute("data-msg-other") || "";
    }

    function ask(mediation, controller) {
      return fetch(url, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json" },
        body: lib.hiddenFields(form).toString()
      }).then(function (resp) {
        if (!resp.ok) throw { name: "options" };
        return resp.json();
      }).then(function (json) {
        var request = {
          publicKey: lib.parseOptions("authenticate", json.publicKey || json),
          signal: controller.signal
        };
        if (mediation) request.mediation = mediation;
        return navigator.credentials.get(request);
      });
    }

    function submit(cred) {
      if (!cred) throw { name: "NotAllowedError" };
      if (sent) return;
      sent = true;
      field.value = JSON.stringify(lib.serialize(cred));
      form.submit();
    }

    function autofill() {
      var PKC = window.PublicKeyCredential;
      if (sent || typeof PKC.isConditionalMediationAvailable !== "function") return;
      PKC.isConditionalMediationAvailable().then(function (available) {
        if (!available || sent) return;
        var controller = new AbortController();
        autofilling = controller;
        ask("conditional", controller).then(submit).catch(function (err) {
          // Aborted for the button, or the page is being left: nothing to say.
          if (autofilling === controller) autofilling = null;
          if (err && err.name === "options") say(message("options"));
        });
      }).catch(function () { /* no autofill: the button remains */ });
    }

    button.addEventListener("click", function () {
      say("");
      if (autofilling) {
        autofilling.abort();
        autofilling = null;
      }
      button.disabled = true;
      ask(null, new AbortController()).then(submit).catch(function (err) {
        button.disabled = false;
        var name = err && err.name;
        say(message(name === "NotAllowedError" || name === "AbortError" ? "cancelled"
          : name === "options" ? "options" : "other"));
        autofill(); // offer the autofill again, with a fresh challenge
      });
    });

    // Back through the history cache: nothing was sent from this page yet.
    window.addEventListener("pageshow", function (ev) {
      if (!ev.persisted) return;
      sent = false;
      field.value = "";
      button.disabled = false;
      autofill();
    });

    box.hidden = false;
    autofill();
  }

  function offer() {
    if (supported()) return;
    document.querySelectorAll("[data-webauthn-required]").forEach(function (el) {
      el.disabled = true;
    });
    document.querySelectorAll("[data-webauthn-unsupported]").forEach(function (el) {
      el.hidden = false;
    });
  }

  function ready() {
    offer();
    if (!supported()) return;
    document.querySelectorAll("[data-passkey-signin]").forEach(signin);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", ready);
  else ready();
})();
