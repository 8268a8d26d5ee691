// The petition editor: as staff type, ask the server for the preview fragment (the same
// template the Preview button renders) and show it. Without JavaScript, Preview does it.
"use strict";
(() => {
  const form = document.getElementById("petition-form");
  const out = document.getElementById("preview");
  if (!form || !out || !window.livePreview) return;

  // The server's own escaped template, parsed inertly (scripts in it never run).
  function draw(fragment) {
    const page = new DOMParser().parseFromString(fragment, "text/html");
    const open = new Set([...out.querySelectorAll("details[open]")].map((d) => d.id));
    out.replaceChildren(...page.body.childNodes);
    for (const details of out.querySelectorAll("details")) details.open = open.has(details.id);
  }

  const { later } = window.livePreview({
    form, out, draw, wait: 400, accept: "text/html",
    unavailable: "The preview is unavailable just now; press Preview, or keep typing to try again.",
  });
  form.addEventListener("input", later);
  form.addEventListener("change", later);
})();
