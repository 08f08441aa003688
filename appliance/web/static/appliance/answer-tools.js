// The tools under an answer: copy it with its numbered sources as plain text, and send
// feedback without reloading the page. Every sentence shown comes from the page itself
// (data-* attributes written by the templates in the person's language), none from here.
(function () {
  "use strict";

  function csrfToken() {
    const input = document.querySelector("input[name=csrfmiddlewaretoken]");
    if (input) return input.value;
    const match = document.cookie.match(/(?:^|; )csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  // The answer as plain text: the question, the answer, then "[n] source (its link)".
  function plainText(section) {
    const lines = [];
    const question = section.querySelector(".q-text");
    if (question && question.textContent.trim()) lines.push(question.textContent.trim(), "");
    const answer = section.querySelector(".answer-text");
    if (answer) lines.push(answer.innerText.trim());
    const sources = section.querySelectorAll("ol.sources > li");
    if (sources.length) {
      const tools = section.querySelector(".answer-tools");
      lines.push("", (tools && tools.dataset.sourcesLabel) || "Sources:");
      sources.forEach((li) => {
        const link = li.querySelector("a");
        const n = li.value || li.getAttribute("value");
        const title = link ? link.textContent.trim() : li.textContent.trim();
        lines.push("[" + n + "] " + title + (link ? " (" + link.href + ")" : ""));
      });
    }
    return lines.join("\n") + "\n";
  }

  async function writeClipboard(text) {
    if (navigator.clipboard && window.isSecureContext) {
      try {
        await navigator.clipboard.writeText(text);
        return true;
      } catch (e) {
        // fall through to the older way (a page served over plain HTTP to another host)
      }
    }
    const area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "sr-only";
    document.body.appendChild(area);
    area.select();
    let copied = false;
    try {
      copied = document.execCommand("copy");
    } catch (e) {
      copied = false;
    }
    area.remove();
    return copied;
  }

  function setUp(tools) {
    if (tools.dataset.ready) return;
    tools.dataset.ready = "1";
    const section = tools.closest("section") || document;
    const copy = tools.querySelector(".copy-answer");
    const copyStatus = tools.querySelector(".copy-status");
    if (copy) {
      copy.hidden = false;
      copy.addEventListener("click", async () => {
        const ok = await writeClipboard(plainText(section));
        copyStatus.textContent = ok ? tools.dataset.copied : tools.dataset.copyFailed;
      });
    }
    const form = tools.querySelector("form.feedback");
    if (!form) return;
    const status = form.querySelector(".feedback-status");
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const button = event.submitter;
      const helpful = button ? button.value === "yes" : true;
      const response = await fetch("/api/v1/questions/" + tools.dataset.questionId + "/feedback", {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
        body: JSON.stringify({
          helpful: helpful,
          comment: form.comment.value,
          share_question: form.share_question.checked,
        }),
      }).catch(() => null);
      const body = response ? await response.json().catch(() => ({})) : {};
      if (!response || !response.ok) {
        status.textContent = body.error || tools.dataset.feedbackFailed;
        return;
      }
      form.querySelectorAll("button.thumb").forEach((b) => {
        b.setAttribute("aria-pressed", String((b.value === "yes") === body.helpful));
      });
      status.textContent = tools.dataset.feedbackSaved;
    });
  }

  // An answer streamed into the page (answer.js) gets the tools once it is complete.
  document.addEventListener("appliance:answer-done", (event) => {
    const template = document.getElementById("answer-tools-template");
    const text = document.getElementById("live-text");
    if (!template || !text || event.detail.failed) return;
    const section = text.closest("section");
    section.querySelectorAll(".answer-tools").forEach((old) => old.remove());
    const id = String(event.detail.questionId);
    const tools = template.content.firstElementChild.cloneNode(true);
    tools.dataset.questionId = id;
    const link = tools.querySelector(".permalink");
    if (link) link.href = "/questions/" + id + "/";
    const form = tools.querySelector("form.feedback");
    if (form) {
      if (event.detail.stopped) {
        form.remove();
      } else {
        form.id = "feedback-" + id;
        form.action = "/questions/" + id + "/feedback";
        const comment = form.querySelector("textarea");
        comment.id = "feedback-comment-" + id;
        form.querySelector("label[for]").htmlFor = comment.id;
      }
    }
    const sources = document.getElementById("live-sources");
    (sources || text).after(tools);
    setUp(tools);
  });

  document.querySelectorAll(".answer-tools").forEach((tools) => {
    if (!tools.closest("template")) setUp(tools);
  });

  document.querySelectorAll("form.confirm").forEach((f) => {
    f.addEventListener("submit", (e) => {
      if (!window.confirm(f.dataset.confirm)) e.preventDefault();
    });
  });
})();
