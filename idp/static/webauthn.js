/* WebAuthn ceremonies for <form data-webauthn="register|authenticate" data-options-url="...">.
 * The form holds hidden inputs (csrf_token, ...), an <input type="hidden" name="credential">
 * and an element with [data-webauthn-status] (inside an optional [data-webauthn-alert] box,
 * shown as a USWDS error alert while it holds a message). On submit: POST the hidden inputs to the
 * options URL, run navigator.credentials.create/get, put the JSON result into "credential"
 * and submit the form normally. Buttons with [data-webauthn-skip] submit without a ceremony.
 * No inline script: all configuration comes from data attributes (CSP script-src 'self'). */
(function () {
  "use strict";

  var MESSAGES = {
    unsupported: "This browser cannot use security keys or passkeys. Try another browser or another way to sign in.",
    NotAllowedError: "The request was cancelled or timed out. Try again when you are ready.",
    AbortError: "The request was cancelled. Try again when you are ready.",
    InvalidStateError: "This security key is already registered to your account.",
    SecurityError: "Security keys cannot be used on this page address.",
    options: "Could not start. Reload the page and try again.",
    other: "Something went wrong with your security key. Try again."
  };
  // The form's data-msg-* attributes carry the messages in the page's language
  // (templates/mfa/_webauthn_messages.html); the English above is the fallback.
  var MESSAGE_ATTRS = {
    unsupported: "unsupported", NotAllowedError: "not-allowed", AbortError: "abort",
    InvalidStateError: "invalid-state", SecurityError: "security", options: "options",
    other: "other"
  };
  function messageOf(form, name) {
    if (!Object.prototype.hasOwnProperty.call(MESSAGES, name)) name = "other";
    return form.getAttribute("data-msg-" + MESSAGE_ATTRS[name]) || MESSAGES[name];
  }

  function b64urlToBuf(s) {
    var b64 = s.replace(/-/g, "+").replace(/_/g, "/");
    while (b64.length % 4) b64 += "=";
    var bin = atob(b64), out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out.buffer;
  }

  function bufToB64url(buf) {
    if (!buf) return null;
    var bytes = new Uint8Array(buf), bin = "";
    for (var i = 0; i < bytes.length; i++) bin += String.fromCharCode(bytes[i]);
    return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function withIds(list) {
    return (list || []).map(function (c) {
      return Object.assign({}, c, { id: b64urlToBuf(c.id) });
    });
  }

  function parseOptions(mode, json) {
    var PKC = window.PublicKeyCredential;
    if (mode === "register") {
      if (typeof PKC.parseCreationOptionsFromJSON === "function") return PKC.parseCreationOptionsFromJSON(json);
      return Object.assign({}, json, {
        challenge: b64urlToBuf(json.challenge),
        user: Object.assign({}, json.user, { id: b64urlToBuf(json.user.id) }),
        excludeCredentials: withIds(json.excludeCredentials)
      });
    }
    if (typeof PKC.parseRequestOptionsFromJSON === "function") return PKC.parseRequestOptionsFromJSON(json);
    return Object.assign({}, json, {
      challenge: b64urlToBuf(json.challenge),
      allowCredentials: withIds(json.allowCredentials)
    });
  }

  function serialize(cred) {
    if (typeof cred.toJSON === "function") {
      try { return cred.toJSON(); } catch (e) { /* fall back to manual encoding */ }
    }
    var r = cred.response, out = {
      id: cred.id,
      rawId: bufToB64url(cred.rawId),
      type: cred.type,
      authenticatorAttachment: cred.authenticatorAttachment || null,
      clientExtensionResults: cred.getClientExtensionResults ? cred.getClientExtensionResults() : {},
      response: { clientDataJSON: bufToB64url(r.clientDataJSON) }
    };
    if (r.attestationObject) {
      out.response.attestationObject = bufToB64url(r.attestationObject);
      out.response.transports = r.getTransports ? r.getTransports() : [];
    } else {
      out.response.authenticatorData = bufToB64url(r.authenticatorData);
      out.response.signature = bufToB64url(r.signature);
      out.response.userHandle = bufToB64url(r.userHandle);
    }
    return out;
  }

  function hiddenFields(form) {
    var body = new URLSearchParams();
    form.querySelectorAll('input[type="hidden"]').forEach(function (input) {
      if (input.name && input.name !== "credential") body.append(input.name, input.value);
    });
    return body;
  }

  function setup(form) {
    var mode = form.getAttribute("data-webauthn");
    var status = form.querySelector("[data-webauthn-status]");
    var field = form.querySelector('input[name="credential"]');
    var ready = false;
    if (status && !status.hasAttribute("role")) status.setAttribute("role", "alert");

    // The message shows as a USWDS error alert; the live region itself stays in place
    // (empty, unstyled) so that screen readers announce each new message.
    var box = form.querySelector("[data-webauthn-alert]");
    function say(text) {
      if (status) status.textContent = text || "";
      if (box) ["usa-alert", "usa-alert--error", "usa-alert--slim"].forEach(function (c) {
        box.classList.toggle(c, !!text);
      });
    }

    // A browser without WebAuthn: say so at once, turn the button off and show the way
    // to another method, instead of a button that can only fail.
    if (!window.PublicKeyCredential || !navigator.credentials) {
      say(messageOf(form, "unsupported"));
      var main = form.querySelector('[type="submit"]:not([data-webauthn-skip])');
      if (main) main.disabled = true;
      document.querySelectorAll("[data-webauthn-fallback]").forEach(function (el) {
        el.hidden = false;
      });
    }

    // Coming back through the history cache must not resubmit a used credential.
    window.addEventListener("pageshow", function () { ready = false; if (field) field.value = ""; });

    form.addEventListener("submit", function (ev) {
      var button = ev.submitter || form.querySelector('[type="submit"]');
      if (ready || (button && button.hasAttribute("data-webauthn-skip"))) return;
      ev.preventDefault();
      say("");
      if (!window.PublicKeyCredential || !navigator.credentials || !field) {
        say(messageOf(form, "unsupported"));
        return;
      }
      if (button) button.disabled = true;
      fetch(form.getAttribute("data-options-url"), {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json" },
        body: hiddenFields(form).toString()
      }).then(function (resp) {
        if (!resp.ok) throw { name: "options" };
        return resp.json();
      }).then(function (json) {
        var publicKey = parseOptions(mode, json.publicKey || json);
        return mode === "register"
          ? navigator.credentials.create({ publicKey: publicKey })
          : navigator.credentials.get({ publicKey: publicKey });
      }).then(function (cred) {
        if (!cred) throw { name: "NotAllowedError" };
        field.value = JSON.stringify(serialize(cred));
        ready = true;
        if (button) button.disabled = false;
        if (form.requestSubmit) form.requestSubmit(button && button.form === form ? button : undefined);
        else form.submit();
      }).catch(function (err) {
        if (button) button.disabled = false;
        var name = err && err.name;
        if (name === "InvalidStateError" && mode !== "register") name = "other";
        say(messageOf(form, name));
      });
    });
  }

  // Shared with passkey.js (the sign-in with a passkey alone), loaded after this file.
  window.idpWebAuthn = { parseOptions: parseOptions, serialize: serialize, hiddenFields: hiddenFields };

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("form[data-webauthn]").forEach(setup);
  });
})();
