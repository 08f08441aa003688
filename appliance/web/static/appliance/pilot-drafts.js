// A golden set's page while the model drafts questions: the batches' progress follows the
// worker, and new drafts are shown by reloading the page, unless the curator has started
// editing or deciding drafts (a reload would lose that): then a line says new ones wait.
(function () {
  "use strict";
  const table = document.getElementById("draft-batches");
  if (!table || table.dataset.drafting !== "1") return;
  const review = document.getElementById("draft-review");
  const news = document.getElementById("draft-news");
  let touched = false;
  if (review) {
    review.addEventListener("input", function () { touched = true; });
    review.addEventListener("change", function () { touched = true; });
    // Opening a passage to read it counts too: a reload would close it.
    review.addEventListener("toggle", function () { touched = true; }, true);
  }
  let shown = Number(table.dataset.pending);
  async function poll() {
    try {
      const response = await fetch(table.dataset.url, { headers: { Accept: "application/json" } });
      if (response.ok) {
        const state = await response.json();
        let running = false;
        for (const batch of state.batches) {
          if (!batch.final) running = true;
          const row = table.querySelector('tr[data-batch="' + batch.id + '"]');
          if (!row) continue;
          const bar = row.querySelector("progress");
          bar.value = batch.percent;
          bar.textContent = batch.percent + "%";
          row.querySelector(".count").textContent = batch.done + " of " + batch.total;
          row.querySelector(".drafted").textContent = batch.drafted;
          const badge = row.querySelector(".badge");
          badge.textContent = batch.label;
          badge.className = "badge " + batch.status;
        }
        if (state.pending !== shown || !running) {
          if (!touched) { window.location.reload(); return; }
          news.hidden = false;
          const _ = window.gettext || ((text) => text);
          news.textContent = _("%(count)s drafts wait for review. Apply your decisions, or reload the page to see them (unsaved edits on this page would be lost).").replace("%(count)s", state.pending);
        }
        if (!running) return;
      }
    } catch (e) { /* the server was away for a moment: try again */ }
    window.setTimeout(poll, 3000);
  }
  window.setTimeout(poll, 2000);
})();
