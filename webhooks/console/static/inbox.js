// A conversation's reply box: as staff type, ask preview.json what the supporter's channel
// will do with the text (SMS segments and cost, Telegram's rendering, WhatsApp's window)
// and draw it; a saved reply picked from the list fills the box. Everything from the server
// is put on the page as text, never as markup.
"use strict";
(() => {
  const form = document.getElementById("reply");
  const out = document.getElementById("reply-preview");
  if (!form || !out || !window.livePreview) return;
  const box = form.elements.namedItem("text");
  const send = document.getElementById("send");
  const reach = document.getElementById("reach");
  const saved = document.getElementById("saved-reply");
  const format = (n) => Number(n).toLocaleString("en-GB");
  const { el } = window.livePreview;

  function sms(s) {
    const parts = [el("h3", "SMS, as it will arrive"), el("pre", s.text)];
    const summary = `${format(s.length)} characters, ${s.gsm7 ? "GSM-7" : "not GSM-7"}, ` +
      `${s.segments} segment(s). Estimated cost: £${s.cost.toFixed(2)} (${s.segments} × £${s.price}).`;
    parts.push(el("p", summary, "sms-summary"));
    if (s.replaced.length) {
      const list = s.replaced.map((u) => `${u.character} (${u.name}) → ${u.becomes}`).join(", ");
      const warning = el("p", `These characters would force Unicode (70 characters a segment, ` +
        `${s.unicode_segments} segment(s)); they are replaced for SMS: ${list}`, "warning");
      warning.setAttribute("role", "alert");
      parts.push(warning);
    }
    if (s.too_long) {
      parts.push(el("p", `Longer than ${s.most_segments} segments: shorten it so it reads as one message.`, "warning"));
    }
    return parts;
  }

  function telegram(t) {
    const parts = [el("h3", "Telegram, as it will show"), el("pre", t.text)];
    const details = el("details");
    details.append(el("summary", "As sent (HTML)"), el("pre", t.html));
    parts.push(details);
    if (t.too_long) parts.push(el("p", `Longer than Telegram's ${format(t.most)} characters.`, "warning"));
    return parts;
  }

  function whatsapp(w, r) {
    const parts = [el("h3", "WhatsApp, as it will show"), el("pre", w.text)];
    const closes = r && r.window_closes_at ? new Date(r.window_closes_at) : null;
    if (closes && closes > new Date()) {
      const until = closes.toLocaleString("en-GB", { dateStyle: "medium", timeStyle: "short" });
      parts.push(el("p", `Inside the 24-hour window until ${until}.`, "window"));
    } else {
      parts.push(el("p", "Outside the 24-hour window: a reply cannot be sent without an approved template.", "warning"));
    }
    if (w.too_long) parts.push(el("p", `Longer than WhatsApp's ${format(w.most)} characters.`, "warning"));
    return parts;
  }

  function draw(data) {
    const r = data.reach;
    let parts = [];
    if (data.sms) parts = sms(data.sms);
    else if (data.telegram) parts = telegram(data.telegram);
    else if (data.whatsapp) parts = whatsapp(data.whatsapp, r);
    out.replaceChildren(...parts);
    if (r && send) {
      send.disabled = !r.can_send;
      send.setAttribute("aria-disabled", String(!r.can_send));
      if (reach) {
        reach.dataset.canSend = r.can_send ? "yes" : "no";
        if (!r.can_send) {
          reach.className = "warning";
          reach.textContent = `Cannot send now. ${r.reason}`;
        }
      }
    }
  }

  const { refresh, later } = window.livePreview({
    form, out, draw, wait: 250, accept: "application/json",
    unavailable: "The preview is unavailable just now; it will retry as you type.",
  });
  box.addEventListener("input", later);
  if (saved) {
    saved.addEventListener("change", () => {
      const option = saved.selectedOptions[0];
      if (option && option.value) {
        box.value = option.dataset.text || "";
        box.focus();
        later();
      }
    });
  }
  refresh();
})();
