// Streams an answer into the page: POST the question, then follow its Server-Sent Events.
// Everything the model writes is inserted as text, never as HTML.
(function () {
  "use strict";

  // Django's JavaScript catalogue (/jsi18n/, loaded by base.html) gives the page's language.
  const _ = window.gettext || ((text) => text);
  const fill = (text, values) => (window.interpolate ? window.interpolate(text, values, true) : text.replace(/%\((\w+)\)s/g, (m, k) => values[k]));
  const form = document.getElementById("ask-form");
  const page = document.getElementById("question-page");
  const statusEl = document.getElementById("ask-status");
  const stopButton = document.getElementById("stop-button");
  let current = null;

  function csrfToken() {
    const input = document.querySelector("input[name=csrfmiddlewaretoken]");
    if (input) return input.value;
    const match = document.cookie.match(/(?:^|; )csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  function setStatus(text) {
    if (statusEl) statusEl.textContent = text;
  }

  function renderWithCitations(target, text, questionId) {
    target.textContent = "";
    const parts = text.split(/(\[\d{1,3}\])/);
    for (const part of parts) {
      const m = part.match(/^\[(\d{1,3})\]$/);
      if (m) {
        const a = document.createElement("a");
        a.className = "cite";
        a.href = "#q" + questionId + "-source-" + m[1];
        a.textContent = part;
        target.appendChild(a);
      } else if (part) {
        target.appendChild(document.createTextNode(part));
      }
    }
  }

  function renderSources(list, sources, cited, questionId) {
    list.textContent = "";
    const shown = cited && cited.length ? sources.filter((s) => cited.includes(s.n)) : sources;
    for (const s of shown) {
      const li = document.createElement("li");
      li.value = s.n;
      li.id = "q" + questionId + "-source-" + s.n;
      const a = document.createElement("a");
      a.href = "/documents/" + s.document_id + "/passage" + (s.chunk_id ? "?chunk=" + s.chunk_id : (s.page ? "?page=" + s.page : ""));
      a.textContent = s.title + (s.page ? ", " + fill(_("page %(page)s"), { page: s.page }) : "");
      const quote = document.createElement("blockquote");
      quote.textContent = s.snippet.length > 280 ? s.snippet.slice(0, 279) + "…" : s.snippet;
      li.appendChild(a);
      li.appendChild(quote);
      list.appendChild(li);
    }
  }

  // After a refusal, say which collections were searched (only ones the person may read,
  // named by the server) and what to try next.
  function showRefusalHint() {
    const hint = document.getElementById("refusal-hint");
    if (!hint || !hint.dataset.collections) return;
    let names = hint.dataset.collections;
    const ticked = form ? Array.from(form.querySelectorAll("input[name=collection_ids]:checked")) : [];
    if (ticked.length) {
      names = ticked.map((box) => box.parentElement.textContent.replace(/\s*\(.*\)\s*$/, "").trim()).join(", ");
    }
    hint.textContent = fill(_("No passage in %(searched)s matched. Try naming the document, picking it under “Ask about one whole document”, or rephrasing."), { searched: names });
    hint.hidden = false;
  }

  // A question about a whole document: the document is read part by part first.
  function showProgress(data) {
    const bar = document.getElementById("live-progress");
    const total = Number(data.total) || 0;
    const done = Math.min(Number(data.done) || 0, total);
    if (bar && total > 0) {
      bar.hidden = false;
      bar.max = total;
      bar.value = done;
    }
    const what = data.title ? "“" + data.title + "”: " : "";
    if (data.stage === "combining") {
      setStatus(done < total ? what + fill(_("combining notes, step %(step)s of %(total)s…"), { step: done + 1, total: total }) : what + _("notes combined…"));
    } else {
      setStatus(done < total ? what + fill(_("reading part %(part)s of %(total)s…"), { part: done + 1, total: total }) : what + fill(window.ngettext ? window.ngettext("read all %(total)s part…", "read all %(total)s parts…", total) : "read all %(total)s parts…", { total: total }));
    }
  }

  function hideProgress() {
    const bar = document.getElementById("live-progress");
    if (bar) bar.hidden = true;
  }

  function follow(questionId) {
    const textEl = document.getElementById("live-text");
    const sourcesEl = document.getElementById("live-sources");
    let answer = "";
    let sources = [];
    current = questionId;
    if (stopButton) stopButton.hidden = false;
    const source = new EventSource("/api/v1/questions/" + questionId + "/events");

    source.addEventListener("queued", (e) => {
      const data = JSON.parse(e.data);
      const ahead = data.ahead !== undefined ? data.ahead : data.position - 1;
      setStatus(ahead > 0 ? fill(ahead === 1 ? _("Waiting: %(ahead)s question is ahead of yours…") : _("Waiting: %(ahead)s questions are ahead of yours…"), { ahead: ahead }) : _("Searching your documents…"));
    });
    source.addEventListener("progress", (e) => showProgress(JSON.parse(e.data)));
    source.addEventListener("sources", (e) => {
      hideProgress();
      sources = JSON.parse(e.data).sources || [];
      setStatus(sources.length ? _("Writing the answer…") : "");
    });
    source.addEventListener("token", (e) => {
      answer += JSON.parse(e.data).text;
      textEl.textContent = answer;
      textEl.classList.add("streaming");
    });
    source.addEventListener("done", (e) => {
      const data = JSON.parse(e.data);
      source.close();
      textEl.classList.remove("streaming");
      renderWithCitations(textEl, data.answer || answer, questionId);
      if (data.grounded === false) {
        textEl.classList.add("not-found");
        showRefusalHint();
      }
      renderSources(sourcesEl, sources.concat(data.earlier_sources || []), data.cited, questionId);
      setStatus(data.stopped ? _("Stopped.") : "");
      // answer-tools.js puts copy, link and feedback under the finished answer.
      document.dispatchEvent(new CustomEvent("appliance:answer-done", { detail: { questionId: questionId, stopped: !!data.stopped } }));
      finish(questionId);
    });
    source.addEventListener("error", (e) => {
      if (e.data) {
        source.close();
        const p = document.createElement("p");
        p.className = "error";
        p.textContent = JSON.parse(e.data).message;
        textEl.after(p);
        setStatus("");
        finish(questionId);
      } else {
        setStatus(_("Connection lost, reconnecting…"));  // EventSource retries on its own
      }
    });
  }

  function finish(questionId) {
    current = null;
    hideProgress();
    if (stopButton) stopButton.hidden = true;
    const button = document.getElementById("ask-button");
    if (button) button.disabled = false;
    if (!form || !questionId) return;
    if (form.conversation_id) {
      // A follow-up: show the whole conversation, this answer included.
      window.location.assign("/questions/" + questionId + "/");
      return;
    }
    const link = document.createElement("a");
    link.href = "/questions/" + questionId + "/#ask-form";
    link.textContent = _("Ask a follow-up");
    link.className = "small followup";
    document.getElementById("live-answer").appendChild(link);
  }

  if (stopButton) {
    stopButton.addEventListener("click", () => {
      if (!current) return;
      fetch("/api/v1/questions/" + current + "/cancel", {
        method: "POST", headers: { "X-CSRFToken": csrfToken() }, credentials: "same-origin",
      });
      setStatus(_("Stopping…"));
    });
  }

  if (form) {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const text = form.question.value.trim();
      if (!text) return;
      const ids = Array.from(form.querySelectorAll("input[name=collection_ids]:checked")).map((i) => Number(i.value));
      const picked = form.querySelector("select[name=document_id]");
      const button = document.getElementById("ask-button");
      button.disabled = true;
      const hint = document.getElementById("refusal-hint");
      if (hint) hint.hidden = true;
      setStatus(_("Sending…"));
      const response = await fetch("/api/v1/questions", {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
        body: JSON.stringify(Object.assign(
          { question: text },
          ids.length ? { collection_ids: ids } : {},
          form.conversation_id && form.conversation_id.value ? { conversation_id: Number(form.conversation_id.value) } : {},
          picked && picked.value ? { document_id: Number(picked.value) } : {},
        )),
      });
      const body = await response.json().catch(() => ({}));
      if (!response.ok) {
        setStatus(body.error || _("The question could not be sent. Please try again."));
        button.disabled = false;
        return;
      }
      const live = document.getElementById("live-answer");
      live.hidden = false;
      live.querySelectorAll("a.followup, p.error").forEach((n) => n.remove());
      document.getElementById("live-question").textContent = text;
      document.getElementById("live-text").textContent = "";
      document.getElementById("live-text").className = "answer-text";
      document.getElementById("live-sources").textContent = "";
      follow(body.id);
    });
  } else if (page && !page.dataset.final) {
    follow(Number(page.dataset.questionId));
  }
})();
