// Passkeys (WebAuthn) in the web UI: the server sends the options of a
// ceremony as JSON (binary fields base64url), the browser's authenticator
// answers, and the answer goes back as JSON in a form field. Every check
// is the server's; this only carries bytes.

import { creationOptions, requestOptions, credentialJSON } from "./webauthn.js";

// post sends fields as a form and returns the JSON answer, or throws its error.
async function post(url, fields) {
  const resp = await fetch(url, { method: "POST", body: new URLSearchParams(fields), credentials: "same-origin" });
  const body = await resp.json().catch(() => ({ error: resp.statusText }));
  if (!resp.ok) throw new Error(body.error || resp.statusText);
  return body;
}

function showError(el, err) {
  if (!el) return;
  el.textContent = err.name === "NotAllowedError" ? "The passkey was not used (cancelled or timed out)." : err.message;
  el.hidden = false;
}

// Registration: a form with data-passkey-register="BASE" posts BASE/begin
// and BASE/finish.
document.addEventListener("submit", async (ev) => {
  const form = ev.target.closest("form[data-passkey-register]");
  if (!form) return;
  ev.preventDefault();
  const base = form.dataset.passkeyRegister;
  const err = form.querySelector("#passkey-error");
  if (err) err.hidden = true;
  const fields = Object.fromEntries(new FormData(form));
  try {
    const ch = await post(base + "/begin", fields);
    const cred = await navigator.credentials.create(creationOptions(ch.webauthn));
    const done = await post(base + "/finish", { csrf: fields.csrf, next: fields.next || "", id: ch.id, response: credentialJSON(cred) });
    window.location.assign(done.redirect);
  } catch (e) {
    showError(err, e);
  }
});

document.addEventListener("click", async (ev) => {
  // Sign-in: passwordless, or (data-passkey-signin="second-factor") after
  // the user name and password of the sign-in form.
  const btn = ev.target.closest("[data-passkey-signin]");
  if (btn) {
    const form = document.getElementById("passkey-form");
    const err = document.getElementById("passkey-error");
    if (err) err.hidden = true;
    const fields = Object.fromEntries(new FormData(form));
    const begin = { csrf: fields.csrf };
    if (btn.dataset.passkeySignin === "second-factor") {
      begin.user = document.getElementById("user").value;
      begin.password = document.getElementById("password").value;
    }
    try {
      const ch = await post("/web/login/passkey/begin", begin);
      const cred = await navigator.credentials.get(requestOptions(ch.webauthn));
      const done = await post("/web/login/passkey/finish", { ...fields, id: ch.id, response: credentialJSON(cred) });
      window.location.assign(done.redirect);
    } catch (e) {
      showError(err, e);
    }
    return;
  }
  // A fresh MFA check for a warden command (the page it opened): the
  // browser then goes back to the command's loopback listener.
  const hand = ev.target.closest("[data-mfa-handoff]");
  if (hand) {
    const form = hand.closest("form");
    const err = document.getElementById("passkey-error");
    if (err) err.hidden = true;
    const fields = Object.fromEntries(new FormData(form));
    try {
      const ch = await post("/web/mfa/begin", fields);
      const cred = await navigator.credentials.get(requestOptions(ch.webauthn));
      const done = await post("/web/mfa/finish", { ...fields, id: ch.id, response: credentialJSON(cred) });
      window.location.assign(done.redirect);
    } catch (e) {
      showError(err, e);
    }
    return;
  }
  // A fresh MFA check with a passkey: the assertion goes into the form,
  // which is then submitted.
  const mfa = ev.target.closest("[data-mfa-passkey]");
  if (mfa) {
    const form = mfa.closest("form");
    const err = form.querySelector("#mfa-error");
    if (err) err.hidden = true;
    try {
      const ch = await post(mfa.dataset.mfaPasskey, { csrf: form.elements.csrf.value });
      if (!ch.webauthn) throw new Error("You have no passkey or security key: use a code.");
      const cred = await navigator.credentials.get(requestOptions(ch.webauthn));
      form.elements.challenge_id.value = ch.id;
      form.elements.webauthn.value = credentialJSON(cred);
      form.submit();
    } catch (e) {
      showError(err, e);
    }
  }
});
