// A pilot run's page: the progress bar follows the run, and the page reloads with the
// measures once the run has ended.
(function () {
  "use strict";
  const box = document.getElementById("run-progress");
  if (!box || box.dataset.final === "1") return;
  const bar = box.querySelector("progress");
  const count = box.querySelector(".count");
  const badge = box.querySelector(".badge");
  async function poll() {
    try {
      const response = await fetch(box.dataset.url, { headers: { Accept: "application/json" } });
      if (response.ok) {
        const run = await response.json();
        bar.value = run.percent;
        bar.textContent = run.percent + "%";
        count.textContent = run.done + "/" + run.total;
        badge.textContent = run.status;
        badge.className = "badge " + run.status;
        if (run.final) { window.location.reload(); return; }
      }
    } catch (e) { /* the server was away for a moment: try again */ }
    window.setTimeout(poll, 2000);
  }
  window.setTimeout(poll, 1000);
})();
