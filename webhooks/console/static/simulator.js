// Simulator: send each message as JSON and add the bot's replies to the transcript.
// Telegram buttons send their callback keyword; the transcript survives a reload.
"use strict";
(() => {
  const list = document.getElementById("transcript");
  const form = document.getElementById("say");
  if (!list || !form) return;
  const channel = list.dataset.channel;
  const key = "petitionbot-simulator-" + channel;
  const token = document.querySelector('meta[name="csrf-token"]').content;
  const input = form.elements.namedItem("text");
  let history = [];
  try { history = JSON.parse(window.sessionStorage.getItem(key) || "[]"); } catch (e) { history = []; }

  function el(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined) node.textContent = text;
    if (className) node.className = className;
    return node;
  }

  function draw(entry, live) {
    const item = el("li", undefined, entry.who);
    item.append(el("span", entry.who === "you" ? "You" : "Bot", "who"), el("p", entry.text));
    if (entry.who === "bot" && live && (entry.buttons.length || entry.contact_button)) {
      const row = el("div", undefined, "buttons");
      for (const b of entry.buttons) {
        const button = el("button", b.label);
        button.type = "button";
        button.addEventListener("click", () => send({ press: b.data }, b.label));
        row.append(button);
      }
      if (entry.contact_button) {
        const button = el("button", entry.contact_button, "contact");
        button.type = "button";
        button.addEventListener("click", () => send({ press: "SHARE_PHONE" }, "(shared the phone number)"));
        row.append(button);
      }
      item.append(row);
    }
    list.append(item);
    item.scrollIntoView({ block: "nearest" });
  }

  function redraw() {
    // Only the replies to the last message keep working buttons, as in a real chat.
    let lastSaid = -1;
    history.forEach((entry, i) => { if (entry.who === "you") lastSaid = i; });
    list.replaceChildren();
    history.forEach((entry, i) => draw(entry, i > lastSaid));
  }

  function remember(entry) {
    history.push(entry);
    history = history.slice(-200);
    window.sessionStorage.setItem(key, JSON.stringify(history));
  }

  async function send(fields, shown) {
    const body = new FormData();
    body.append("csrf_token", token);
    for (const [name, value] of Object.entries(fields)) body.append(name, value);
    remember({ who: "you", text: shown });
    redraw();
    try {
      const response = await fetch(form.action, {
        method: "POST", body, credentials: "same-origin",
        headers: { Accept: "application/json", "X-CSRFToken": token },
      });
      const data = await response.json();
      if (!response.ok) throw new Error(data.error || String(response.status));
      if (!data.replies.length) remember({ who: "bot", text: "(no reply)", buttons: [], contact_button: "" });
      for (const reply of data.replies) remember({ who: "bot", ...reply });
    } catch (error) {
      remember({ who: "bot", text: "(the simulator could not reach the bot: " + error.message + ")", buttons: [], contact_button: "" });
    }
    redraw();
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    input.value = "";
    send({ text }, text);
    input.focus();
  });
  for (const reset of document.querySelectorAll("form.inline")) {
    reset.addEventListener("submit", () => {
      for (const c of ["sms", "whatsapp", "telegram"]) window.sessionStorage.removeItem("petitionbot-simulator-" + c);
    });
  }
  if (history.length) redraw();
})();
