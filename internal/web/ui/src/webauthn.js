// WebAuthn options and answers as JSON: the server sends the options of a
// ceremony with binary fields in base64url; the answer goes back the same way.

const b64 = {
  decode(s) {
    const bin = atob(s.replace(/-/g, "+").replace(/_/g, "/"));
    return Uint8Array.from(bin, (c) => c.charCodeAt(0)).buffer;
  },
  encode(buf) {
    let s = "";
    for (const b of new Uint8Array(buf)) s += String.fromCharCode(b);
    return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  },
};

export function creationOptions(o) {
  const pk = { ...o.publicKey };
  pk.challenge = b64.decode(pk.challenge);
  pk.user = { ...pk.user, id: b64.decode(pk.user.id) };
  pk.excludeCredentials = (pk.excludeCredentials || []).map((c) => ({ ...c, id: b64.decode(c.id) }));
  return { publicKey: pk };
}

export function requestOptions(o) {
  const pk = { ...o.publicKey };
  pk.challenge = b64.decode(pk.challenge);
  pk.allowCredentials = (pk.allowCredentials || []).map((c) => ({ ...c, id: b64.decode(c.id) }));
  return { publicKey: pk };
}

export function credentialJSON(cred) {
  const r = cred.response;
  const out = { id: cred.id, rawId: b64.encode(cred.rawId), type: cred.type, clientExtensionResults: cred.getClientExtensionResults(), response: {} };
  out.response.clientDataJSON = b64.encode(r.clientDataJSON);
  if (r.attestationObject) {
    out.response.attestationObject = b64.encode(r.attestationObject);
    if (r.getTransports) out.response.transports = r.getTransports();
  } else {
    out.response.authenticatorData = b64.encode(r.authenticatorData);
    out.response.signature = b64.encode(r.signature);
    if (r.userHandle) out.response.userHandle = b64.encode(r.userHandle);
  }
  return JSON.stringify(out);
}
