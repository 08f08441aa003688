// The collection page: uploads in parts (many files or a whole folder) with a progress bar,
// and a documents table that stays current while files are read.
(function () {
  "use strict";
  const FINAL = ["ready", "failed", "cancelled"];
  // Django's JavaScript catalogue (/jsi18n/, loaded by base.html) gives the page's language.
  const _ = window.gettext || ((text) => text);
  const fill = (text, values) => (window.interpolate ? window.interpolate(text, values, true) : text.replace(/%\((\w+)\)s/g, (m, k) => values[k]));
  const LABELS = { queued: _("Queued"), parsing: _("Parsing"), embedding: _("Embedding"), ready: _("Ready"), failed: _("Failed"), cancelled: _("Cancelled") };
  // One request carries at most this many files or bytes, far below the server's limits,
  // so a folder of thousands of files goes up in parts and a failure costs one part only.
  const PART_FILES = 50;
  const PART_BYTES = 64 * 1024 * 1024;

  document.querySelectorAll("form.confirm").forEach((f) => {
    f.addEventListener("submit", (e) => { if (!window.confirm(f.dataset.confirm)) e.preventDefault(); });
  });

  // --- uploading ---------------------------------------------------------------------------
  const form = document.getElementById("upload-form");
  const summaryKey = form ? "upload-summary-" + form.dataset.api : "";

  function chosenFiles() {
    const out = [];
    form.querySelectorAll('input[type="file"]').forEach((input) => {
      for (const file of input.files) {
        const path = file.webkitRelativePath || file.name;
        // Hidden files and folders (.DS_Store, .git/...) are not documents.
        if (path.split("/").some((part) => part.startsWith("."))) continue;
        out.push({ file, path });
      }
    });
    return out;
  }

  function parts(files) {
    const out = [];
    let current = [];
    let bytes = 0;
    for (const item of files) {
      if (current.length && (current.length >= PART_FILES || bytes + item.file.size > PART_BYTES)) {
        out.push(current);
        current = [];
        bytes = 0;
      }
      current.push(item);
      bytes += item.file.size;
    }
    if (current.length) out.push(current);
    return out;
  }

  function send(part, onProgress) {
    return new Promise((resolve) => {
      const body = new FormData();
      for (const { file, path } of part) {
        body.append("files", file, file.name);
        body.append("paths", path);
      }
      const request = new XMLHttpRequest();
      request.open("POST", form.dataset.api);
      request.setRequestHeader("X-CSRFToken", form.querySelector("[name=csrfmiddlewaretoken]").value);
      request.upload.onprogress = (e) => { if (e.lengthComputable) onProgress(e.loaded); };
      request.onload = () => {
        let json = null;
        try { json = JSON.parse(request.responseText); } catch (e) { /* not JSON */ }
        resolve({ status: request.status, json });
      };
      request.onerror = () => resolve({ status: 0, json: null });
      request.send(body);
    });
  }

  async function upload(event) {
    const files = chosenFiles();
    if (!files.length) return; // let the browser say a file is needed
    event.preventDefault();
    const progress = document.getElementById("upload-progress");
    const bar = progress.querySelector("progress");
    const label = progress.querySelector("span");
    const total = files.reduce((n, item) => n + item.file.size, 0) || 1;
    const counts = { queued: 0, versions: 0, duplicates: 0 };
    const refused = [];
    let sent = 0;
    form.querySelector("button[type=submit]").disabled = true;
    progress.hidden = false;
    const all = parts(files);
    for (let i = 0; i < all.length; i++) {
      const part = all[i];
      const partBytes = part.reduce((n, item) => n + item.file.size, 0);
      label.textContent = fill(_("Uploading part %(part)s of %(total)s…"), { part: i + 1, total: all.length });
      const { status, json } = await send(part, (loaded) => { bar.value = (100 * (sent + loaded)) / total; });
      sent += partBytes;
      bar.value = (100 * sent) / total;
      if (status !== 202 || !json) {
        const reason = (json && json.error) || fill(_("the server answered %(status)s."), { status: status || _("nothing") });
        part.forEach(({ path }) => refused.push(path + ": " + _("not uploaded,") + " " + reason));
        continue;
      }
      for (const d of json.documents) {
        if (d.status === "rejected") refused.push((d.name || d.title) + ": " + d.error);
        else if (d.duplicate) counts.duplicates += 1;
        else if (d.new_version) counts.versions += 1;
        else counts.queued += 1;
      }
    }
    const lines = [];
    if (counts.queued) lines.push(fill(_("%(count)s file(s) queued for reading."), { count: counts.queued }));
    if (counts.versions) lines.push(fill(_("%(count)s new version(s) queued; the current versions answer until they are ready."), { count: counts.versions }));
    if (counts.duplicates) lines.push(fill(_("%(count)s file(s) already in this collection, not added again."), { count: counts.duplicates }));
    window.sessionStorage.setItem(summaryKey, JSON.stringify({ lines, refused }));
    window.location.reload();
  }

  function showSummary() {
    const raw = window.sessionStorage.getItem(summaryKey);
    if (!raw) return;
    window.sessionStorage.removeItem(summaryKey);
    const { lines, refused } = JSON.parse(raw);
    const box = document.getElementById("upload-summary");
    for (const line of lines) {
      const p = document.createElement("p");
      p.textContent = line;
      box.appendChild(p);
    }
    if (refused.length) {
      const p = document.createElement("p");
      p.className = "error";
      p.textContent = fill(_("%(count)s file(s) not added:"), { count: refused.length });
      box.appendChild(p);
      const list = document.createElement("ul");
      list.className = "error";
      for (const line of refused) {
        const li = document.createElement("li");
        li.textContent = line;
        list.appendChild(li);
      }
      box.appendChild(list);
    }
    box.hidden = false;
  }

  if (form) {
    form.addEventListener("submit", upload);
    showSummary();
  }

  // --- live progress of the documents on this page ----------------------------------------
  const table = document.getElementById("documents");
  if (!table) return;

  function openRows() {
    return Array.from(table.querySelectorAll("tr[data-document-id]")).filter((r) => !FINAL.includes(r.dataset.status));
  }

  async function refresh() {
    const ids = openRows().map((r) => r.dataset.documentId);
    if (!ids.length) return;
    const url = "/api/v1/collections/" + table.dataset.collectionId + "/documents?ids=" + ids.join(",");
    const response = await fetch(url, { credentials: "same-origin" });
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
      row.querySelector(".pages").textContent = d.pages == null ? (d.pages_done ? d.pages_done + "…" : "–") : d.pages_done + " / " + d.pages;
      row.querySelector(".chunks").textContent = d.chunks_done + (d.chunks ? " / " + d.chunks : "");
      if (changedToFinal && d.status !== "ready") window.location.reload(); // show Retry
    }
  }

  async function loop() {
    if (!openRows().length) return;
    try { await refresh(); } catch (e) { /* keep trying */ }
    setTimeout(loop, 1500);
  }
  loop();
})();
