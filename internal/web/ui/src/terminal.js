// The web terminal: an xterm over a WebSocket to the proxy, which opens an
// SSH session to the node as the signed-in user. Binary messages carry the
// terminal's bytes both ways. Text messages are JSON: from the page, the
// size ({cols, rows}; the first message also carries {resume, offset} when
// it comes back after a drop) and acknowledgements of the output written
// ({ack}); from the server, the resume token ({token, offset}) and, before
// a close, the reason ({reason}).
//
// Resume: when the socket drops (a network blip), the server keeps the
// SSH session for a grace window (60 s unless configured: data-grace). The page reconnects with backoff
// and sends the token and the number of output bytes it has received; the
// server sends the rest and goes on.
//
// Per-session MFA: when the node requires a fresh MFA check for each
// session, the server's first message is {mfa: {node, login, totp,
// webauthn}}: the page shows a form, and sends the answer over the socket
// ({otp}, or {mfa_begin} for a passkey challenge ({challenge}), then
// {challenge_id, webauthn}). A refused answer comes back as {mfa_error};
// the terminal opens (the token message) once the check is done.
//
// Flow control: the page acknowledges output once xterm has written it
// (write callback), and the server sends at most a window (1 MiB) ahead of
// the acknowledgements, so a flood of output never queues more than that
// in the browser, which stays responsive.
import "./nonce.js";
import { Terminal } from "@xterm/xterm";
import { FitAddon } from "@xterm/addon-fit";
import { requestOptions, credentialJSON } from "./webauthn.js";

const box = document.getElementById("terminal");
const status = document.getElementById("term-status");
const term = new Terminal({ cursorBlink: true, fontSize: 14, scrollback: 5000 });
const fit = new FitAddon();
term.loadAddon(fit);
term.open(box);
fit.fit();
term.focus();

const GRACE_MS = Number(box.dataset.grace) || 60000; // the server's grace window
const ACK_BYTES = 64 * 1024;
const url = new URL(box.dataset.ws, location.href);
url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
const enc = new TextEncoder();
const readOnly = box.dataset.readonly === "1";
if (readOnly) term.options.disableStdin = true;

let ws = null;
let token = ""; // the current resume token (never in a URL)
let received = 0; // output bytes received (offset of the next one)
let written = 0; // output bytes xterm has written
let acked = 0; // the last acknowledgement sent
let pending = 0; // writes queued in xterm
let finished = false;
let lostAt = 0; // when the socket dropped (0: connected)
let attempt = 0;
let retryTimer = 0;

const open = () => ws && ws.readyState === WebSocket.OPEN;
const send = (m) => open() && ws.send(JSON.stringify(m));
const size = () => send({ cols: term.cols, rows: term.rows });
const ack = () => {
  if (written > acked && (written - acked >= ACK_BYTES || pending === 0)) {
    acked = written;
    send({ ack: written });
  }
};
const showReason = (msg) => term.write("\r\n\x1b[1;31m" + String(msg).replace(/[\x00-\x1f\x7f]/g, "") + "\x1b[0m\r\n");

// The per-session MFA form.
const mfa = {
  form: document.getElementById("mfa-form"),
  otp: document.getElementById("mfa-otp"),
  error: document.getElementById("mfa-error"),
  show(p) {
    document.getElementById("mfa-label").textContent =
      `${p.login}@${p.node} requires an MFA check for each session.`;
    document.getElementById("mfa-totp").hidden = !p.totp;
    document.getElementById("mfa-webauthn").hidden = !p.webauthn;
    this.form.hidden = false;
    status.textContent = "MFA check";
    box.dataset.mfa = "1";
    if (p.totp) this.otp.focus();
  },
  fail(msg) {
    this.error.textContent = msg;
    this.error.hidden = false;
    this.otp.value = "";
  },
  hide() {
    if (this.form.hidden) return;
    this.form.hidden = true;
    delete box.dataset.mfa;
    term.focus();
  },
};
mfa.form.addEventListener("submit", (ev) => {
  ev.preventDefault();
  mfa.error.hidden = true;
  send({ otp: mfa.otp.value.trim() });
  status.textContent = "checking…";
});
document.getElementById("mfa-passkey").addEventListener("click", () => {
  mfa.error.hidden = true;
  send({ mfa_begin: true });
});
async function passkey(ch) {
  try {
    const cred = await navigator.credentials.get(requestOptions(ch.webauthn));
    send({ challenge_id: ch.id, webauthn: JSON.parse(credentialJSON(cred)) });
    status.textContent = "checking…";
  } catch (e) {
    mfa.fail(e.name === "NotAllowedError" ? "The passkey was not used (cancelled or timed out)." : e.message);
  }
}

function finish(reason) {
  mfa.hide();
  finished = true;
  status.textContent = "disconnected" + (reason ? ": " + reason : "");
  box.dataset.closed = "1";
}

function connect() {
  retryTimer = 0;
  const sock = new WebSocket(url);
  ws = sock;
  sock.binaryType = "arraybuffer";
  sock.onopen = () => {
    const hello = { cols: term.cols, rows: term.rows };
    if (token) {
      hello.resume = token;
      hello.offset = received;
    }
    sock.send(JSON.stringify(hello));
  };
  sock.onmessage = (ev) => {
    if (sock !== ws) return;
    if (typeof ev.data !== "string") {
      const bytes = new Uint8Array(ev.data);
      received += bytes.length;
      const end = received;
      pending++;
      term.write(bytes, () => {
        pending--;
        written = Math.max(written, end);
        ack();
      });
      return;
    }
    let m;
    try {
      m = JSON.parse(ev.data);
    } catch {
      m = { reason: ev.data };
    }
    if (m.mfa) mfa.show(m.mfa);
    if (m.challenge) passkey(m.challenge);
    if (m.mfa_error) mfa.fail(m.mfa_error);
    if (m.token) {
      mfa.hide();
      token = m.token;
      // Output before m.offset is written or queued; acknowledge from there.
      acked = Math.max(acked, m.offset);
      lostAt = 0;
      attempt = 0;
      status.textContent = "connected";
      box.dataset.resumes = String(Number(box.dataset.resumes || "-1") + 1);
      delete box.dataset.reconnecting;
      size();
    }
    if (m.reason) {
      showReason(m.reason);
      finish(m.reason);
    }
  };
  sock.onclose = (ev) => {
    if (sock !== ws || finished) return;
    // 1000: the session ended; 1008: refused (the reason came first);
    // 4000 and up: another window took the terminal over. Anything else
    // (1006: the connection was cut) is worth coming back from.
    if (!token || ev.code === 1000 || ev.code === 1008 || ev.code >= 4000) {
      finish(ev.reason);
      return;
    }
    retry();
  };
}

function retry() {
  if (!lostAt) lostAt = Date.now();
  if (Date.now() - lostAt > GRACE_MS) {
    finish("the connection could not be restored");
    return;
  }
  status.textContent = "reconnecting…";
  box.dataset.reconnecting = "1";
  const delay = Math.min(8000, 250 * 2 ** attempt++) * (0.75 + Math.random() / 2);
  retryTimer = setTimeout(connect, delay);
}

// Back online: try at once rather than at the end of the backoff.
window.addEventListener("online", () => {
  if (retryTimer) {
    clearTimeout(retryTimer);
    connect();
  }
});

term.onData((d) => !readOnly && token && open() && ws.send(enc.encode(d)));
term.onResize(size);
window.addEventListener("resize", () => fit.fit());
connect();
