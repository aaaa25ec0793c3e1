// xterm's DOM renderer adds <style> elements. The page's CSP admits styles
// with its per-page nonce only: stamp it on them as they are created.
// Imported first by the terminal and player bundles.
const nonce = document.querySelector('meta[name="style-nonce"]')?.content;
if (nonce) {
  const create = Document.prototype.createElement;
  Document.prototype.createElement = function (name, opts) {
    const el = create.call(this, name, opts);
    if (String(name).toLowerCase() === "style") el.setAttribute("nonce", nonce);
    return el;
  };
}
