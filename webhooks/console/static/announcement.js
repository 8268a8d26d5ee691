// An announcement's page: while it is being sent, poll progress.json and update the counts
// and the explanations (what holds it up, why some people did not get it).
"use strict";
(() => {
  const box = document.getElementById("progress");
  if (!box) return;
  const url = box.dataset.url;
  const bar = document.getElementById("progress-bar");
  const status = document.getElementById("status");
  const note = document.getElementById("progress-note");
  const finished = (s) => s === "sent" || s === "cancelled";
  const format = (n) => n.toLocaleString("en-GB");

  // Replace a section's list with these explanations; hide the section when there are none.
  function explain(section, explanations) {
    if (!section) return;
    const items = explanations.map((e) => {
      const item = document.createElement("li");
      item.dataset.code = e.code;
      item.textContent = e.text;
      return item;
    });
    section.querySelector("ul").replaceChildren(...items);
    section.hidden = items.length === 0;
  }

  async function poll() {
    let data;
    try {
      const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
      if (!response.ok) throw new Error(String(response.status));
      data = await response.json();
    } catch (error) {
      note.textContent = "Could not update the progress; retrying.";
      window.setTimeout(poll, 10000);
      return;
    }
    const c = data.counts;
    const shown = { ...c, pending: c.pending + c.claimed };
    for (const cell of box.querySelectorAll("td[data-status]")) {
      const value = shown[cell.dataset.status];
      if (value !== undefined) cell.textContent = format(value);
    }
    const open = c.pending + c.claimed + c.sending;
    bar.max = Math.max(data.total, 1);
    bar.value = data.total - open;
    status.textContent = data.status;
    status.className = "status " + data.status;
    explain(document.getElementById("why"), data.explanations.filter((e) => e.kind === "hold"));
    explain(document.getElementById("outcomes"), data.explanations.filter((e) => e.kind === "outcome"));
    if (finished(data.status)) {
      note.textContent = "Finished.";
      // Pause, resume and cancel were for a sending announcement: nothing is left to stop.
      for (const form of document.querySelectorAll(".actions form")) form.remove();
      return;
    }
    note.textContent = data.status === "sending" ? "Updating every few seconds while it sends." : "";
    window.setTimeout(poll, data.status === "sending" ? 2000 : 10000);
  }

  if (!finished(box.dataset.status)) window.setTimeout(poll, 2000);
})();
