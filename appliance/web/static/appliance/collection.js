// Keeps the documents table current while files are being read: status, progress, errors.
(function () {
  "use strict";
  const table = document.getElementById("documents");
  const FINAL = ["ready", "failed", "cancelled"];
  const LABELS = { queued: "Queued", parsing: "Parsing", embedding: "Embedding", ready: "Ready", failed: "Failed", cancelled: "Cancelled" };

  document.querySelectorAll("form.confirm").forEach((f) => {
    f.addEventListener("submit", (e) => { if (!window.confirm(f.dataset.confirm)) e.preventDefault(); });
  });
  if (!table) return;

  function pending() {
    return Array.from(table.querySelectorAll("tr[data-document-id]")).some((r) => !FINAL.includes(r.dataset.status));
  }

  async function refresh() {
    const response = await fetch("/api/v1/collections/" + table.dataset.collectionId + "/documents", { credentials: "same-origin" });
    if (!response.ok) return;
    const body = await response.json();
    for (const d of body.documents) {
      const row = table.querySelector('tr[data-document-id="' + d.id + '"]');
      if (!row) continue;
      const changedToFinal = !FINAL.includes(row.dataset.status) && FINAL.includes(d.status);
      row.dataset.status = d.status;
      const badge = row.querySelector(".badge");
      badge.className = "badge " + d.status;
      badge.textContent = LABELS[d.status] || d.status;
      row.querySelector(".status .error").textContent = d.error || "";
      row.querySelector("progress").value = d.progress;
      row.querySelector(".pages").textContent = d.pages == null ? "–" : d.pages;
      row.querySelector(".chunks").textContent = d.chunks_done + (d.chunks ? " / " + d.chunks : "");
      if (changedToFinal && d.status === "failed") window.location.reload();  // show Retry
    }
  }

  async function loop() {
    if (!pending()) return;
    try { await refresh(); } catch (e) { /* keep trying */ }
    setTimeout(loop, 1500);
  }
  loop();
})();
