// The petition editor: as staff type, ask the server for the preview fragment (the same
// template the Preview button renders) and show it. Without JavaScript, Preview does it.
"use strict";
(() => {
  const form = document.getElementById("petition-form");
  const out = document.getElementById("preview");
  if (!form || !out) return;
  const token = document.querySelector('meta[name="csrf-token"]').content;
  let timer = 0;
  let sequence = 0;

  async function refresh() {
    const mine = ++sequence;
    try {
      const response = await fetch(form.dataset.preview, {
        method: "POST",
        body: new FormData(form),
        headers: { "X-CSRFToken": token, Accept: "text/html" },
        credentials: "same-origin",
      });
      if (!response.ok) throw new Error(String(response.status));
      // The server's own escaped template, parsed inertly (scripts in it never run).
      const page = new DOMParser().parseFromString(await response.text(), "text/html");
      if (mine !== sequence) return;
      const open = new Set([...out.querySelectorAll("details[open]")].map((d) => d.id));
      out.replaceChildren(...page.body.childNodes);
      for (const details of out.querySelectorAll("details")) details.open = open.has(details.id);
    } catch (error) {
      if (mine === sequence) {
        const note = document.createElement("p");
        note.className = "warning";
        note.textContent = "The preview is unavailable just now; press Preview, or keep typing to try again.";
        out.replaceChildren(note);
      }
    }
  }

  const later = () => { window.clearTimeout(timer); timer = window.setTimeout(refresh, 400); };
  form.addEventListener("input", later);
  form.addEventListener("change", later);
})();
