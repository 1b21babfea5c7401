// framescribe review page: the "Ask" box. POST /v1/ask as Server-Sent Events: the evidence, the model's
// text as it is written, then the answer whose citations the server checked. Each citation links to its
// segment (#/jobs/<id>?seg=<index>). On a job page the question is scoped to that job unless unticked.
// Model text only ever goes in as textContent. An ES module: the key and the stream reader are shared.
import { authHeaders } from "./api.js";
import { readEvents } from "./events.js";

(function () {
  const form = document.getElementById("ask-form");
  const panel = document.getElementById("ask-panel");
  if (!form || !panel) return;
  const input = document.getElementById("ask-q");
  const scope = document.getElementById("ask-job");
  const scopeLabel = document.getElementById("ask-scope");
  const answerBox = panel.querySelector(".ask-answer");
  const byline = panel.querySelector(".ask-byline");
  const cited = panel.querySelector(".ask-citations");
  const notes = panel.querySelector(".ask-notes");
  let abort = null;

  function currentJob() {
    const m = location.hash.match(/^#\/jobs\/([0-9a-f]{32})/);
    return m ? m[1] : null;
  }

  function syncScope() {
    const job = currentJob();
    scopeLabel.hidden = !job;
  }

  function node(tag, attrs, text) {
    const n = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) n.setAttribute(k, v);
    if (text !== undefined) n.textContent = text;
    return n;
  }

  function link(c) {
    const a = node("a", { href: `#/jobs/${c.job_id}?seg=${c.index}`, class: "cite",
      title: `${c.source_name || ""} segment ${c.index + 1}` }, c.text);
    return a;
  }

  // The checked answer with each citation (in order of appearance) as a link to its segment.
  function renderAnswer(result) {
    answerBox.replaceChildren();
    const text = result.answer || "";
    const queue = [...(result.citations || [])];
    let pos = 0;
    for (const c of queue) {
      const at = text.indexOf(c.text, pos);
      if (at < 0) continue;
      answerBox.append(document.createTextNode(text.slice(pos, at)), link(c));
      pos = at + c.text.length;
    }
    answerBox.append(document.createTextNode(text.slice(pos)));
    byline.textContent = result.written_by_model
      ? `Written by ${result.model}; every cited time was checked against the evidence.`
      : (result.kind === "no_evidence" ? "No evidence found; no model was asked." : "Not written by a language model.");
    cited.replaceChildren(...(result.citations || []).map((c) => {
      const li = node("li");
      li.append(link(c), document.createTextNode(` ${c.source_name || ""}`));
      return li;
    }));
    const extra = [...(result.notes || [])];
    for (const u of result.unsupported_citations || []) extra.push(`Removed ${u.text}: outside the evidence.`);
    notes.replaceChildren(...extra.map((t) => node("li", {}, t)));
    panel.dataset.state = "done";
  }

  function fail(message) {
    answerBox.textContent = message;
    byline.textContent = "";
    panel.dataset.state = "error";
  }

  function handle(event, data) {
    if (!data) return false;
    const payload = JSON.parse(data);
    if (event === "delta") {
      if (panel.dataset.state !== "streaming") { answerBox.textContent = ""; panel.dataset.state = "streaming"; }
      answerBox.append(document.createTextNode(payload.text));
    } else if (event === "evidence") {
      byline.textContent = `${payload.evidence.length} moment(s) found; answering…`;
    } else if (event === "answer") renderAnswer(payload);
    else if (event === "error") fail(payload.error ? payload.error.message : "the answer failed");
    return false;
  }

  async function ask(question) {
    if (abort) abort.abort();
    abort = new AbortController();
    panel.hidden = false;
    panel.dataset.state = "asking";
    panel.querySelector(".ask-question").textContent = question;
    answerBox.textContent = "Looking through the footage…";
    byline.textContent = "";
    cited.replaceChildren();
    notes.replaceChildren();
    const body = { question, stream: true };
    const job = currentJob();
    if (job && scope.checked) body.job = job;
    const headers = authHeaders({ "Content-Type": "application/json", Accept: "text/event-stream" });
    try {
      const res = await fetch("/v1/ask", { method: "POST", headers, body: JSON.stringify(body), signal: abort.signal });
      if (!res.ok) {
        let msg = `${res.status} ${res.statusText}`;
        try { const e = await res.json(); if (e && e.error) msg = e.error.message; } catch (_) { /* not JSON */ }
        fail(msg);
        return;
      }
      await readEvents(res.body, handle);
    } catch (err) {
      if (err.name !== "AbortError") fail(String(err.message || err));
    }
  }

  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const q = input.value.trim();
    if (q) ask(q);
  });
  panel.querySelector(".ask-close").addEventListener("click", () => { panel.hidden = true; if (abort) abort.abort(); });
  window.addEventListener("hashchange", syncScope);
  syncScope();
})();
