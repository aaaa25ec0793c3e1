// The recording player: an xterm fed from an asciicast read by HTTP range.
// The server answers the recording's index (event time → byte offset, a
// point every 64 KiB); to start or to seek, the player reads from the
// index point before the moment (with a little before it, to rebuild the
// screen) and then reads on, a chunk at a time, as it plays. It never
// downloads the whole recording.
import "./nonce.js";
import { Terminal } from "@xterm/xterm";

const CHUNK = 256 * 1024; // bytes per range read
const LOOKBACK = 256 * 1024; // bytes replayed at once before a seek target
const IDLE = 1; // with "skip idle", no pause is longer (seconds)

const root = document.getElementById("player");
const base = root.dataset.base;
const $ = (id) => document.getElementById(id);
const playBtn = $("play"), seekBar = $("seek"), clock = $("clock"), status = $("player-status");
const term = new Terminal({ fontSize: 14, scrollback: 2000, disableStdin: true, convertEol: false });
term.open($("terminal"));

let ix = null; // the index
let events = []; // loaded events [time, type, data], from evPos on not yet shown
let evPos = 0;
let nextOffset = 0; // next byte to read
let carry = new Uint8Array(0); // an incomplete last line
let eof = false;
let loading = null;
let gen = 0; // bumped by each seek: reads of an earlier one are dropped
let pos = 0; // the playing time (seconds)
let playing = false;
let last = 0;
const ranges = []; // the ranges read (for the tests and the curious)
const dec = new TextDecoder();

const fmt = (t) => {
  t = Math.max(0, Math.floor(t));
  const h = Math.floor(t / 3600), m = Math.floor((t % 3600) / 60), s = String(t % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
};
const setStatus = (s) => { status.textContent = s; root.dataset.state = s; };

function addBytes(buf, final) {
  const all = new Uint8Array(carry.length + buf.length);
  all.set(carry);
  all.set(buf, carry.length);
  let end = all.lastIndexOf(10) + 1; // after the last "\n"
  if (final) end = all.length;
  carry = all.slice(end);
  for (const line of dec.decode(all.subarray(0, end)).split("\n")) {
    if (line[0] !== "[") continue; // the header, blank lines
    try {
      const ev = JSON.parse(line);
      if (Array.isArray(ev) && ev.length === 3 && typeof ev[0] === "number") events.push(ev);
    } catch { /* a line cut by the first range of a seek */ }
  }
}

// more reads the next chunk (once at a time).
function more() {
  if (eof || loading) return loading;
  const g = gen;
  const start = nextOffset, end = Math.min(ix.length, start + CHUNK) - 1;
  if (end < start) {
    eof = true;
    return null;
  }
  ranges.push(`${start}-${end}`);
  root.dataset.ranges = ranges.join(",");
  loading = fetch(`${base}/cast`, { headers: { Range: `bytes=${start}-${end}` }, credentials: "same-origin" })
    .then((res) => {
      if (res.status !== 206 && res.status !== 200) throw new Error(`reading the recording: HTTP ${res.status}`);
      return res.arrayBuffer();
    })
    .then((b) => {
      if (g !== gen) return;
      nextOffset = end + 1;
      eof = nextOffset >= ix.length;
      addBytes(new Uint8Array(b), eof);
    })
    .catch((e) => setStatus(String(e.message || e)))
    .finally(() => { if (g === gen) loading = null; });
  return loading;
}

// show writes every loaded event up to time t.
function show(t) {
  let out = "";
  while (evPos < events.length && events[evPos][0] <= t) {
    const [, type, data] = events[evPos++];
    if (type === "o") out += data;
    else if (type === "r") {
      const m = /^(\d+)x(\d+)$/.exec(data);
      if (m) {
        if (out) term.write(out);
        out = "";
        term.resize(Math.min(+m[1], 1000), Math.min(+m[2], 1000));
      }
    }
  }
  if (out) term.write(out);
  if (evPos > 10000) {
    events = events.slice(evPos);
    evPos = 0;
  }
}

function ui() {
  clock.textContent = `${fmt(pos)} / ${fmt(ix.duration)}`;
  if (document.activeElement !== seekBar) seekBar.value = pos;
  playBtn.textContent = playing ? "Pause" : "Play";
}

function tick(now) {
  if (!playing) return;
  const dt = Math.min((now - last) / 1000, 1);
  last = now;
  const ahead = evPos < events.length;
  if (ahead) {
    pos += dt * Number($("speed").value);
    const next = events[evPos][0];
    if ($("skip-idle").checked && next - pos > IDLE) pos = next - IDLE;
    show(pos);
  }
  if (events.length - evPos < 2000 && !eof) more();
  if (evPos >= events.length && eof) {
    pos = Math.max(pos, ix.duration);
    playing = false;
    setStatus("ended");
  }
  ui();
  if (playing) requestAnimationFrame(tick);
}

function play() {
  if (playing || !ix) return;
  if (eof && evPos >= events.length) {
    seek(0).then(play);
    return;
  }
  playing = true;
  setStatus("playing");
  last = performance.now();
  requestAnimationFrame(tick);
}

function pause() {
  playing = false;
  setStatus("paused");
  ui();
}

// seek shows the moment t: the screen as it was then, rebuilt from the
// output shortly before it.
async function seek(t) {
  const g = ++gen;
  t = Math.min(Math.max(0, t), ix.duration);
  loading = null;
  events = [];
  evPos = 0;
  carry = new Uint8Array(0);
  term.reset();
  pos = t;
  const n = ix.offsets.length;
  if (n === 0) {
    eof = true;
    ui();
    return;
  }
  eof = false;
  let i = 0; // the last point at or before t
  for (let lo = 0, hi = n - 1; lo <= hi;) {
    const mid = (lo + hi) >> 1;
    if (ix.times[mid] <= t) { i = mid; lo = mid + 1; } else hi = mid - 1;
  }
  let j = i;
  while (j > 0 && ix.offsets[j - 1] >= ix.offsets[i] - LOOKBACK) j--;
  nextOffset = ix.offsets[j];
  while (!eof && (events.length === 0 || events[events.length - 1][0] < t)) {
    await more();
    if (g !== gen) return;
  }
  show(t);
  ui();
}

playBtn.addEventListener("click", () => (playing ? pause() : play()));
seekBar.addEventListener("change", () => {
  const was = playing;
  playing = false;
  seek(Number(seekBar.value)).then(() => (was ? play() : pause()));
});

$("cmd-search").addEventListener("submit", async (e) => {
  e.preventDefault();
  const q = $("cmd-q").value.trim();
  const list = $("cmd-results");
  list.replaceChildren();
  if (!q) return;
  const res = await fetch(`${base}/search?q=${encodeURIComponent(q)}`, { credentials: "same-origin" });
  if (!res.ok) {
    const li = document.createElement("li");
    li.textContent = await res.text();
    list.append(li);
    return;
  }
  const hits = await res.json();
  if (hits.length === 0) {
    const li = document.createElement("li");
    li.className = "empty";
    li.textContent = "Not found in this recording.";
    list.append(li);
  }
  for (const h of hits) {
    const li = document.createElement("li");
    const b = document.createElement("button");
    b.type = "button";
    b.className = "link hit";
    b.dataset.t = h.t;
    b.textContent = `${fmt(h.t)}  ${h.type === "i" ? "typed: " : ""}${h.line}`;
    b.addEventListener("click", () => {
      playing = false;
      seek(h.t).then(play);
    });
    li.append(b);
    list.append(li);
  }
});

(async () => {
  const res = await fetch(`${base}/index`, { credentials: "same-origin" });
  if (!res.ok) {
    setStatus(await res.text());
    return;
  }
  ix = await res.json();
  if (ix.width > 0 && ix.height > 0) term.resize(Math.min(ix.width, 1000), Math.min(ix.height, 1000));
  seekBar.max = ix.duration;
  const at = parseFloat(root.dataset.at);
  if (at >= 0) {
    await seek(at);
    play();
  } else {
    await seek(0);
    pause();
  }
  if ($("cmd-q").value) $("cmd-search").requestSubmit();
})();
