// The web UI's only script: htmx for partial page updates, configured for
// a strict Content-Security-Policy, plus a copy button. Every page works
// without it.
import htmx from "htmx.org/dist/htmx.esm.js";
import "./passkeys.js";

Object.assign(htmx.config, {
  allowEval: false, // no hx-on, no js: expressions: the CSP forbids eval anyway
  allowScriptTags: false, // swapped-in HTML never runs scripts
  includeIndicatorStyles: false, // no inline <style> (the CSP forbids it)
  selfRequestsOnly: true,
  historyCacheSize: 0, // pages hold private data: keep no copies in localStorage
});

document.addEventListener("click", (ev) => {
  const btn = ev.target.closest("[data-copy]");
  if (!btn) return;
  const el = document.getElementById(btn.dataset.copy);
  if (el && navigator.clipboard) {
    navigator.clipboard.writeText(el.textContent.trim()).then(() => {
      btn.textContent = "Copied";
    });
  }
});

// Countdowns (an access request's expiry): <time class="countdown"
// datetime="…"> shows "in 4m" as the server rendered it, then counts.
function fmtDuration(ms) {
  const past = ms < 0;
  const s = Math.floor(Math.abs(ms) / 1000);
  let out;
  if (s < 60) out = s + "s";
  else if (s < 3600) out = Math.floor(s / 60) + "m";
  else if (s < 48 * 3600) out = Math.floor(s / 3600) + "h" + String(Math.floor(s / 60) % 60).padStart(2, "0") + "m";
  else out = Math.floor(s / 86400) + "d";
  return past ? out + " ago" : "in " + out;
}

function tick() {
  for (const el of document.querySelectorAll("time.countdown")) {
    const t = Date.parse(el.dateTime);
    if (!Number.isNaN(t)) el.textContent = fmtDuration(t - Date.now());
  }
}

if (document.querySelector("time.countdown")) {
  tick();
  setInterval(tick, 1000);
}
