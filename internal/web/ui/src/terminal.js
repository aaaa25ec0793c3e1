// The web terminal: an xterm over a WebSocket to the proxy, which opens an
// SSH session to the node as the signed-in user. Binary messages carry the
// terminal's bytes both ways; a text message tells the size.
import "./nonce.js";
import { Terminal } from "@xterm/xterm";
import { FitAddon } from "@xterm/addon-fit";

const box = document.getElementById("terminal");
const status = document.getElementById("term-status");
const term = new Terminal({ cursorBlink: true, fontSize: 14, scrollback: 5000 });
const fit = new FitAddon();
term.loadAddon(fit);
term.open(box);
fit.fit();
term.focus();

const url = new URL(box.dataset.ws, location.href);
url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
const ws = new WebSocket(url);
ws.binaryType = "arraybuffer";
const enc = new TextEncoder();
const size = () => ws.readyState === WebSocket.OPEN && ws.send(JSON.stringify({ cols: term.cols, rows: term.rows }));

ws.onopen = () => {
  status.textContent = "connected";
  size();
};
ws.onmessage = (ev) => {
  if (typeof ev.data === "string") {
    term.write("\r\n\x1b[1;31m" + ev.data.replace(/[\x00-\x1f\x7f]/g, "") + "\x1b[0m\r\n");
  } else {
    term.write(new Uint8Array(ev.data));
  }
};
ws.onclose = (ev) => {
  status.textContent = "disconnected" + (ev.reason ? ": " + ev.reason : "");
  box.dataset.closed = "1";
};
// An observer's terminal sends no keys.
const readOnly = box.dataset.readonly === "1";
if (readOnly) term.options.disableStdin = true;
term.onData((d) => !readOnly && ws.readyState === WebSocket.OPEN && ws.send(enc.encode(d)));
term.onResize(size);
window.addEventListener("resize", () => fit.fit());
