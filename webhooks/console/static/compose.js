// Compose: as staff type, ask preview.json what each channel will show and draw it.
// Everything from the server is put on the page as text, never as markup.
"use strict";
(() => {
  const form = document.getElementById("compose");
  const out = document.getElementById("preview");
  const counter = document.getElementById("text-count");
  if (!form || !out || !window.livePreview) return;
  const format = (n) => Number(n).toLocaleString("en-GB");
  const { el } = window.livePreview;

  function bubble(title, text, channel) {
    const article = el("article", undefined, "bubble " + channel);
    article.append(el("h3", title), el("pre", text));
    return article;
  }

  function draw(data) {
    const parts = [];
    const recipients = Object.entries(data.recipients).map(([c, n]) => `${c} ${format(n)}`).join(", ");
    const summary = el("p");
    summary.append(el("strong", format(data.total)), ` recipient(s) now: ${recipients || "none"}`);
    parts.push(summary);
    for (const [field, messages] of Object.entries(data.errors || {})) {
      parts.push(el("p", `${field}: ${messages.join(" ")}`, "error"));
    }
    if (data.sms) {
      const s = data.sms;
      const box = bubble("SMS", s.text, "sms");
      box.append(el("p", `${s.length} characters, ${s.encoding}, ${s.segments} segment(s) each. ` +
        `Estimated cost: £${s.cost.toFixed(2)} (${format(s.recipients)} × ${s.segments} × £${s.price}).`));
      if (s.unicode_characters.length) {
        const list = s.unicode_characters.map((u) => `${u.character} (${u.name.toLowerCase()}) → ${u.becomes}`).join(", ");
        const warning = el("p", `These characters would force Unicode (70 characters a segment, ` +
          `${s.unicode_segments} segment(s)); they are replaced for SMS: ${list}`, "warning");
        warning.setAttribute("role", "alert");
        box.append(warning);
      }
      parts.push(box);
    }
    if (data.whatsapp) {
      const w = data.whatsapp;
      const box = bubble("WhatsApp", w.text, "whatsapp");
      if (w.outside_window) {
        const fate = w.template ? "get the template instead" : "be skipped (no template given)";
        box.append(el("p", `${format(w.outside_window)} of ${format(w.recipients)} WhatsApp recipient(s) ` +
          `have not written in the last 24 hours and will ${fate}.`, "warning"));
      }
      parts.push(box);
    }
    if (data.telegram) {
      const box = bubble("Telegram", data.telegram.text, "telegram");
      const details = el("details");
      details.append(el("summary", "As sent (HTML)"), el("pre", data.telegram.html));
      box.append(details);
      parts.push(box);
    }
    out.replaceChildren(...parts);
  }

  // Characters as the server counts them (code points: an emoji is one, not two).
  function count() {
    const text = form.elements.namedItem("text").value;
    if (counter) counter.textContent = `${format(Array.from(text).length)} of 1,200 characters`;
  }

  const { refresh, later } = window.livePreview({
    form, out, draw, before: count, wait: 300, accept: "application/json",
    unavailable: "The preview is unavailable just now; it will retry as you type.",
  });
  form.addEventListener("input", later);
  form.addEventListener("change", later);
  refresh();
})();
