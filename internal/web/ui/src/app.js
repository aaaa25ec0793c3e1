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
