// Shared by the pages that preview as staff type (compose.js, inbox.js, petition.js):
// post the form to its data-preview URL a moment after the last change and hand the answer
// to the page's draw(); an answer overtaken by a later one is dropped. Loaded before the
// page's own script. Without JavaScript, each page's Preview button or server-drawn
// preview does the same.
"use strict";
(() => {
  // An element with this text (as text, never as markup) and class.
  function el(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined) node.textContent = text;
    if (className) node.className = className;
    return node;
  }

  function livePreview({ form, out, wait, accept, unavailable, draw, before }) {
    const token = document.querySelector('meta[name="csrf-token"]').content;
    const json = accept === "application/json";
    let timer = 0;
    let sequence = 0;

    async function refresh() {
      const mine = ++sequence;
      if (before) before();
      try {
        const response = await fetch(form.dataset.preview, {
          method: "POST",
          body: new FormData(form),
          headers: { "X-CSRFToken": token, Accept: accept },
          credentials: "same-origin",
        });
        if (!response.ok) throw new Error(String(response.status));
        const data = json ? await response.json() : await response.text();
        if (mine === sequence) draw(data);
      } catch (error) {
        if (mine === sequence) out.replaceChildren(el("p", unavailable, "warning"));
      }
    }

    const later = () => { window.clearTimeout(timer); timer = window.setTimeout(refresh, wait); };
    return { refresh, later };
  }

  livePreview.el = el;
  window.livePreview = livePreview;
})();
