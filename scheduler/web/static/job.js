// framescribe review page: one job (facts, progress, timeline, segment cards, frames, live updates).
import { apiJSON, setImage } from "./api.js";
import { FINISHED_SEG, TERMINAL, clock, doneCount, el, fmtDate, fmtInt, mount, onLeave, say, span } from "./dom.js";
import { followEvents } from "./events.js";
import { wireExports } from "./exports.js";
import { segCard } from "./segments.js";

export function showJob(jobId, wantSeg) {
  const root = mount("tpl-job");
  const q = (s) => root.querySelector(s);
  const video = q("video");
  const dialog = q(".frames-dialog");
  const cards = new Map();  // index -> [signature, li]
  let job = null, segs = [], abort = new AbortController(), refreshTimer = null, selected = null;
  onLeave(() => { abort.abort(); clearTimeout(refreshTimer); });

  function renderHead() {
    q("#job-h").textContent = job.source_name || job.id;
    const st = q("[data-role=state]");
    st.className = `state-badge s-${job.state}`;
    st.textContent = job.state;
    const p = job.progress || {}, total = job.segment_count || 0;
    const finished = [...FINISHED_SEG].reduce((n, s) => n + (p[s] || 0), 0);
    const v = job.video || {};
    const facts = [
      ["Duration", v.duration_ms !== undefined ? clock(v.duration_ms) : "—"],
      ["Video", v.width ? `${v.width}×${v.height}, ${Number(v.fps).toFixed(2)} fps` : "—"],
      ["Segments done", `${doneCount(p)} / ${total}`],
      ["Failed", fmtInt(p.failed || 0)],
      ["Tokens (in / out / video)", `${fmtInt(job.usage.input_tokens)} / ${fmtInt(job.usage.output_tokens)} / ${fmtInt(job.usage.video_tokens)}`],
      ["Cost", job.usage.cost === null || job.usage.cost === undefined ? "—" : `${Number(job.usage.cost).toFixed(4)} ${job.usage.currency || ""}`],
      ["Preset", job.options.preset || "default"],
      ["Created", fmtDate(job.created_at)],
      ["Finished", fmtDate(job.finished_at)],
    ];
    q(".facts").replaceChildren(...facts.map(([k, val]) => el("div", {}, el("dt", { text: k }), el("dd", { text: val }))));
    const bar = q("progress");
    bar.max = Math.max(1, total);
    bar.value = finished;
    q(".progress-label").textContent = total ? `${finished} of ${total} segments finished (${job.state})` : `${job.state}: planning…`;
    const err = q(".job-error");
    err.hidden = !job.error;
    err.textContent = job.error ? `Error: ${job.error}` : "";
    q(".retry-job").hidden = !(["failed", "partial", "cancelled"].includes(job.state) && ((p.failed || 0) + (p.cancelled || 0)) > 0);
    q(".cancel-job").hidden = TERMINAL.has(job.state);
  }

  function renderSegments() {
    const list = q(".segments"), timeline = q(".timeline");
    const total = segs.length ? segs[segs.length - 1].end_ms - segs[0].start_ms : 1;
    timeline.replaceChildren(...segs.map((seg) => {
      const b = el("button", { type: "button", role: "listitem", class: `tl s-${seg.state}`, "data-index": seg.index,
        "aria-label": `Segment ${seg.index + 1}, ${span(seg.start_ms, seg.end_ms)}, ${seg.state}`,
        title: `${span(seg.start_ms, seg.end_ms)} ${seg.state}`, onclick: () => select(seg.index, true) });
      b.style.flex = `${Math.max(1, seg.end_ms - seg.start_ms) / total} 1 0`;
      if (selected === seg.index) b.classList.add("active");
      return b;
    }));
    for (const seg of segs) {
      const sig = JSON.stringify([seg.state, seg.description, seg.error, seg.frames.length, seg.video_tokens, job.state]);
      const have = cards.get(seg.index);
      if (have && have[0] === sig) continue;
      const li = segCard(seg, job.state, { openFrames, retry });
      if (selected === seg.index) li.classList.add("active");
      if (have) have[1].replaceWith(li); else list.append(li);
      cards.set(seg.index, [sig, li]);
    }
  }

  function select(index, focusCard) {
    selected = index;
    for (const b of root.querySelectorAll(".timeline .tl")) b.classList.toggle("active", Number(b.dataset.index) === index);
    for (const [i, [, li]] of cards) li.classList.toggle("active", i === index);
    const seg = segs.find((s) => s.index === index);
    const card = cards.get(index);
    if (card && focusCard) { card[1].scrollIntoView({ block: "center" }); card[1].focus({ preventScroll: true }); }
    if (seg && !q(".player").hidden) { try { video.currentTime = seg.start_ms / 1000; } catch (_) { /* not loaded yet */ } }
  }

  function openFrames(seg) {
    select(seg.index, false);
    q("#frames-h").textContent = `Segment ${seg.index + 1}: ${span(seg.start_ms, seg.end_ms)}`;
    const grid = q(".frames-grid");
    grid.replaceChildren(...seg.frames.map((url, n) => {
      const img = el("img", { alt: `Frame ${n + 1} of ${seg.frames.length} in segment ${seg.index + 1}`, width: "320", height: "180" });
      setImage(img, url);
      return el("figure", {}, img, el("figcaption", { text: `frame ${n + 1}` }));
    }));
    if (!dialog.open) dialog.showModal();
    q(".dialog-head .close").focus();
  }
  q(".dialog-head .close").addEventListener("click", () => dialog.close());
  dialog.addEventListener("close", () => { const c = cards.get(selected); if (c) c[1].querySelector(".open")?.focus(); });

  q(".timeline").addEventListener("keydown", (ev) => {
    if (ev.key !== "ArrowRight" && ev.key !== "ArrowLeft") return;
    const buttons = [...root.querySelectorAll(".timeline .tl")];
    const at = buttons.indexOf(document.activeElement);
    if (at < 0) return;
    const next = buttons[Math.min(buttons.length - 1, Math.max(0, at + (ev.key === "ArrowRight" ? 1 : -1)))];
    next.focus();
    select(Number(next.dataset.index), false);
    ev.preventDefault();
  });

  async function retry() {
    try {
      await apiJSON(`/v1/jobs/${jobId}/retry`, { method: "POST" });
      say("Failed segments queued again.");
      await refresh();
      follow();
    } catch (e) { say(`Cannot retry: ${e.message}`, true); }
  }
  q(".retry-job").addEventListener("click", retry);
  q(".cancel-job").addEventListener("click", async () => {
    try { await apiJSON(`/v1/jobs/${jobId}/cancel`, { method: "POST" }); say("Job cancelled."); refresh(); }
    catch (e) { say(`Cannot cancel: ${e.message}`, true); }
  });

  wireExports(q(".exports"), jobId);

  async function loadSegments() {
    const all = [];
    let after = -1;
    for (;;) {
      const page = await apiJSON(`/v1/jobs/${jobId}/segments?after=${after}&limit=2000`);
      all.push(...page.items);
      if (page.next_after === null || page.next_after === undefined) break;
      after = page.next_after;
    }
    return all;
  }

  async function refresh() {
    try {
      job = await apiJSON(`/v1/jobs/${jobId}`);
      segs = await loadSegments();
      renderHead();
      renderSegments();
      if (TERMINAL.has(job.state)) {
        try {
          const s = await apiJSON(`/v1/jobs/${jobId}/summary`);
          q(".summary").textContent = (s.summary && s.summary.text) || "";
        } catch (_) { /* summary not ready */ }
      }
    } catch (e) { say(`Cannot load job ${jobId}: ${e.message}`, true); }
  }
  function soon() { clearTimeout(refreshTimer); refreshTimer = setTimeout(refresh, 250); }

  async function follow() {
    abort.abort();
    abort = new AbortController();
    try {
      await followEvents(`/v1/jobs/${jobId}/events`, abort.signal, soon);
    } catch (e) {
      if (e.name !== "AbortError") say(`Live progress stopped: ${e.message}`, true);
    } finally { soon(); }
  }

  (async () => {
    await refresh();
    if (!job) return;
    if (!TERMINAL.has(job.state)) follow();
    try {
      const link = await apiJSON(`/v1/jobs/${jobId}/source-url`);
      video.src = link.url;
      q(".player").hidden = false;
    } catch (_) { /* the source is not reachable by the server: no player */ }
    if (wantSeg !== null && wantSeg !== undefined && cards.has(Number(wantSeg))) select(Number(wantSeg), true);
  })();
}

