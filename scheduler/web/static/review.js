// framescribe review page: vanilla JS over the REST API (no build step, no CDN).
// Every request carries the API key from localStorage as "Authorization: Bearer"; images, downloads
// and the progress stream go through fetch() for that reason. All model text goes in as textContent.
"use strict";

const KEY = "framescribe.apiKey";
const TERMINAL = new Set(["done", "partial", "failed", "cancelled"]);
const FINISHED_SEG = new Set(["done", "static", "failed", "cancelled"]);
const DESCRIBED = new Set(["done", "static"]);
const main = document.getElementById("main");
let cleanup = [];
const blobCache = new Map();

// -- helpers --------------------------------------------------------------------------------
function apiKey() { return localStorage.getItem(KEY) || ""; }

function authHeaders(extra) {
  const h = new Headers(extra || {});
  const key = apiKey();
  if (key) h.set("Authorization", "Bearer " + key);
  return h;
}

async function api(path, opts = {}) {
  const res = await fetch(path, { ...opts, headers: authHeaders(opts.headers) });
  if (!res.ok) {
    let msg = `${res.status} ${res.statusText}`;
    try {
      const body = await res.json();
      if (body && body.error) msg = body.error.message;
    } catch (_) { /* not JSON */ }
    if (res.status === 401) msg += " — enter a valid API key at the top right";
    const err = new Error(msg);
    err.status = res.status;
    throw err;
  }
  return res;
}

async function apiJSON(path, opts) { return (await api(path, opts)).json(); }

function say(msg, isError = false) {
  const box = document.getElementById("status");
  box.textContent = msg || "";
  box.classList.toggle("error", Boolean(isError));
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

function clock(ms, hours = false) {
  const t = Math.max(0, Math.floor((ms || 0) / 1000));
  const h = Math.floor(t / 3600), m = Math.floor((t % 3600) / 60), s = t % 60;
  const p = (n) => String(n).padStart(2, "0");
  return h || hours ? `${p(h)}:${p(m)}:${p(s)}` : `${p(m)}:${p(s)}`;
}
function span(a, b) { const hours = b >= 3600000; return `${clock(a, hours)}–${clock(b, hours)}`; }
function fmtInt(n) { return Number(n || 0).toLocaleString("en-US"); }
function fmtDate(iso) {
  if (!iso) return "—";
  const d = new Date(iso), p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}`;
}
function doneCount(progress) { return (progress.done || 0) + (progress.static || 0); }
function totalTokens(u) { return (u.input_tokens || 0) + (u.output_tokens || 0) + (u.video_tokens || 0); }
function badge(state) { return el("span", { class: `state-badge s-${state}`, text: state }); }

function setImage(img, url) {
  if (!apiKey()) { img.src = url; return; }
  if (blobCache.has(url)) { img.src = blobCache.get(url); return; }
  api(url).then((r) => r.blob()).then((b) => {
    const obj = URL.createObjectURL(b);
    blobCache.set(url, obj);
    img.src = obj;
  }).catch(() => { img.alt += " (not available)"; });
}

function mount(templateId) {
  for (const fn of cleanup) fn();
  cleanup = [];
  main.replaceChildren(document.getElementById(templateId).content.cloneNode(true));
  return main;
}

// -- routing --------------------------------------------------------------------------------
function route() {
  const hash = location.hash.slice(1) || "/";
  const [path, query] = hash.split("?");
  const params = new URLSearchParams(query || "");
  for (const a of document.querySelectorAll("nav a")) a.removeAttribute("aria-current");
  say("");
  let m;
  if (path === "/submit") { document.getElementById("nav-submit").setAttribute("aria-current", "page"); showSubmit(); }
  else if ((m = path.match(/^\/jobs\/([0-9a-f]{32})$/))) showJob(m[1], params.get("seg"));
  else if (path === "/search") showSearch(params.get("q") || "");
  else if (path.startsWith("/cameras") && window.showCameras) window.showCameras(decodeURIComponent(path.slice(9)));
  else { document.getElementById("nav-jobs").setAttribute("aria-current", "page"); showJobs(); }
}

// -- jobs list ------------------------------------------------------------------------------
function showJobs() {
  const root = mount("tpl-jobs");
  const form = root.querySelector("#jobs-filter");
  const tbody = root.querySelector("tbody");
  const more = root.querySelector(".more");
  let cursor = null, timer = null;

  async function load(append) {
    const q = new URLSearchParams({ limit: "50" });
    const fd = new FormData(form);
    if (fd.get("state")) q.set("state", fd.get("state"));
    if (fd.get("source")) q.set("source", fd.get("source"));
    if (append && cursor) q.set("cursor", cursor);
    try {
      const data = await apiJSON(`/v1/jobs?${q}`);
      if (!append) tbody.replaceChildren();
      for (const job of data.items) tbody.append(jobRow(job));
      cursor = data.next_cursor;
      more.hidden = !cursor;
      root.querySelector(".empty").hidden = tbody.children.length > 0;
      const active = data.items.some((j) => !TERMINAL.has(j.state));
      clearTimeout(timer);
      if (active && !append) timer = setTimeout(() => load(false), 3000);
    } catch (e) { say(`Cannot list jobs: ${e.message}`, true); }
  }
  form.addEventListener("submit", (ev) => { ev.preventDefault(); load(false); });
  more.addEventListener("click", () => load(true));
  cleanup.push(() => clearTimeout(timer));
  load(false);
}

function jobRow(job) {
  const dur = job.video ? clock(job.video.duration_ms) : "—";
  return el("tr", { "data-job": job.id },
    el("td", {}, el("a", { href: `#/jobs/${job.id}`, text: job.source_name || job.id })),
    el("td", {}, badge(job.state)),
    el("td", { class: "num", text: dur }),
    el("td", { class: "num", text: `${doneCount(job.progress)} / ${job.segment_count}` }),
    el("td", { class: "num", text: fmtInt(totalTokens(job.usage)) }),
    el("td", { text: fmtDate(job.created_at) }));
}

// -- submit ---------------------------------------------------------------------------------
function showSubmit() {
  const root = mount("tpl-submit");
  const form = root.querySelector("#submit-form");
  const submitBtn = root.querySelector("#submit-btn");
  const out = root.querySelector("#estimate");
  const kind = () => new FormData(form).get("kind");

  function sync() {
    for (const d of form.querySelectorAll(".src")) d.hidden = d.dataset.kind !== kind();
  }
  function invalidate() { submitBtn.disabled = true; out.replaceChildren(); }
  form.addEventListener("change", (ev) => { if (ev.target.name === "kind") sync(); invalidate(); });
  form.addEventListener("input", invalidate);

  function options() {
    const fd = new FormData(form), opts = {};
    for (const name of ["fps", "segment_seconds"]) if (fd.get(name)) opts[name] = Number(fd.get(name));
    if (fd.get("preset")) opts.preset = fd.get("preset");
    return opts;
  }
  function request(dryRun) {
    const fd = new FormData(form), opts = { ...options(), ...(dryRun ? { dry_run: true } : {}) };
    if (kind() === "upload") {
      const file = form.querySelector("input[type=file]").files[0];
      if (!file) throw new Error("choose a file to upload");
      const body = new FormData();
      body.append("options", JSON.stringify(opts));
      body.append("file", file, file.name);
      return { method: "POST", body };
    }
    const src = String(fd.get(kind()) || "").trim();
    if (!src) throw new Error(`enter the ${kind() === "url" ? "URL" : "path"} of a video`);
    return { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ [kind()]: src, ...opts }) };
  }

  root.querySelector("#estimate-btn").addEventListener("click", async () => {
    try {
      say("Estimating…");
      const data = await apiJSON("/v1/jobs", request(true));
      const v = data.video, e = data.estimate;
      out.replaceChildren(el("h3", { text: "Estimate" }), el("dl", {},
        el("dt", { text: "Video" }), el("dd", { text: `${clock(v.duration_ms)}, ${v.width}×${v.height}, ${Number(v.fps).toFixed(2)} fps` }),
        el("dt", { text: "Segments" }), el("dd", { text: fmtInt(e.segments) }),
        el("dt", { text: "Frames" }), el("dd", { text: fmtInt(e.frames) }),
        el("dt", { text: "Model calls" }), el("dd", { text: fmtInt(e.calls) }),
        el("dt", { text: "Video tokens" }), el("dd", { text: fmtInt(e.video_tokens) }),
        el("dt", { text: "Model" }), el("dd", { text: e.model || "—" })));
      submitBtn.disabled = false;
      say("Estimate ready: submit the job when it looks right.");
      submitBtn.focus();
    } catch (e) { say(`Cannot estimate: ${e.message}`, true); }
  });
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (submitBtn.disabled) return;
    try {
      submitBtn.disabled = true;
      say("Submitting…");
      const job = await apiJSON("/v1/jobs", request(false));
      say(`Job ${job.id} queued.`);
      location.hash = `#/jobs/${job.id}`;
    } catch (e) { submitBtn.disabled = false; say(`Cannot submit: ${e.message}`, true); }
  });
  sync();
}

// -- one job --------------------------------------------------------------------------------
function badgesOf(structured) {
  const out = [];
  if (!structured || typeof structured !== "object") return out;
  if (structured.threat_level !== undefined && structured.threat_level !== null) {
    const t = Number(structured.threat_level);
    out.push(el("span", { class: `badge threat-${t}`, text: `threat level ${t}/3` }));
  }
  const scores = [];
  if (typeof structured.score === "number") scores.push(structured.score);
  if (Array.isArray(structured.highlights)) for (const h of structured.highlights) if (h && typeof h.score === "number") scores.push(h.score);
  if (scores.length) {
    const best = Math.max(...scores);
    out.push(el("span", { class: `badge${best >= 0.7 ? " score-high" : ""}`, text: `highlight ${best.toFixed(2)}` }));
  }
  for (const key of ["activity", "title"]) {
    if (typeof structured[key] === "string" && structured[key]) out.push(el("span", { class: "badge", text: structured[key].slice(0, 60) }));
  }
  for (const key of ["people", "vehicles", "concerns"]) {
    const v = structured[key];
    if (Array.isArray(v) && v.length) out.push(el("span", { class: "badge", text: `${key}: ${v.length}` }));
  }
  return out;
}

function pickFrames(urls, count) {
  if (urls.length <= count) return urls.map((u, i) => [u, i]);
  const out = [];
  for (let k = 0; k < count; k++) { const i = Math.round((k * (urls.length - 1)) / (count - 1)); out.push([urls[i], i]); }
  return out;
}

function showJob(jobId, wantSeg) {
  const root = mount("tpl-job");
  const q = (s) => root.querySelector(s);
  const video = q("video");
  const dialog = q(".frames-dialog");
  const cards = new Map();  // index -> [signature, li]
  let job = null, segs = [], abort = new AbortController(), refreshTimer = null, selected = null;
  cleanup.push(() => { abort.abort(); clearTimeout(refreshTimer); });

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

  function segCard(seg) {
    const li = el("li", { class: "seg", id: `seg-${seg.index}`, tabindex: "-1", "data-index": seg.index, "data-state": seg.state });
    const tokens = seg.input_tokens + seg.output_tokens + seg.video_tokens;
    const openBtn = el("button", { type: "button", class: "open secondary", text: `Frames (${seg.frames.length})`,
      "aria-label": `Show the ${seg.frames.length} frames of segment ${seg.index + 1}, ${span(seg.start_ms, seg.end_ms)}`,
      disabled: seg.frames.length === 0, onclick: () => openFrames(seg) });
    li.append(el("div", { class: "seg-head" },
      el("span", { class: "times", text: span(seg.start_ms, seg.end_ms) }),
      badge(seg.state),
      el("span", { class: "tokens", text: tokens ? `${fmtInt(tokens)} tokens` : "no tokens" }),
      openBtn));
    if (DESCRIBED.has(seg.state) && seg.description) li.append(el("p", { class: "desc", text: seg.description }));
    if (seg.state === "failed" || (seg.state === "cancelled" && seg.error)) {
      li.append(el("p", { class: "reason", text: `${seg.state === "failed" ? "Failed" : "Cancelled"}: ${seg.error || "no reason recorded"}` }));
      if (TERMINAL.has(job.state)) li.append(el("button", { type: "button", class: "retry", text: "Retry failed segments", onclick: retry }));
    }
    const badges = badgesOf(seg.structured);
    if (badges.length) li.append(el("div", { class: "badges" }, ...badges));
    if (seg.frames.length) {
      const strip = el("div", { class: "thumbs" });
      for (const [url, n] of pickFrames(seg.frames, 6)) {
        const img = el("img", { alt: `Frame ${n + 1} of ${seg.frames.length}, segment ${seg.index + 1} (${span(seg.start_ms, seg.end_ms)})`,
          loading: "lazy", width: "128", height: "72" });
        img.addEventListener("click", () => openFrames(seg));
        setImage(img, url);
        strip.append(img);
      }
      li.append(strip);
    }
    return li;
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
      const li = segCard(seg);
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

  const exportsForm = q(".exports");
  exportsForm.addEventListener("change", () => {
    const fmt = new FormData(exportsForm).get("format");
    exportsForm.querySelector(".min-score").hidden = !(fmt === "edl" || fmt === "otio");
  });
  exportsForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const fd = new FormData(exportsForm);
    const params = new URLSearchParams({ format: fd.get("format") });
    if ((fd.get("format") === "edl" || fd.get("format") === "otio") && fd.get("min_score")) params.set("min_score", fd.get("min_score"));
    try {
      const res = await api(`/v1/jobs/${jobId}/export?${params}`);
      const cd = res.headers.get("Content-Disposition") || "";
      const name = (cd.match(/filename="([^"]+)"/) || [])[1] || `${jobId}.${fd.get("format")}`;
      const url = URL.createObjectURL(await res.blob());
      const a = el("a", { href: url, download: name, hidden: true });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60000);
      say(`Downloaded ${name}.`);
    } catch (e) { say(`Cannot export: ${e.message}`, true); }
  });

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
      const res = await api(`/v1/jobs/${jobId}/events`, { signal: abort.signal, headers: { Accept: "text/event-stream" } });
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let cut;
        while ((cut = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, cut);
          buf = buf.slice(cut + 2);
          const event = (block.match(/^event: (.*)$/m) || [])[1];
          if (!event) continue;
          soon();
          if (event === "end") { reader.cancel(); return; }
        }
      }
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

// -- search ---------------------------------------------------------------------------------
function marked(text, marks) {
  const p = el("p", { class: "snippet" });
  let pos = 0;
  for (const [a, b] of marks) {
    if (a < pos) continue;
    p.append(text.slice(pos, a), el("mark", { text: text.slice(a, b) }));
    pos = b;
  }
  p.append(text.slice(pos));
  return p;
}

async function showSearch(query) {
  const root = mount("tpl-search");
  document.getElementById("search-q").value = query;
  root.querySelector("#search-h").textContent = `Segments matching “${query}”`;
  const list = root.querySelector(".hits");
  try {
    const data = await apiJSON(`/v1/search?${new URLSearchParams({ q: query, limit: "50" })}`);
    for (const hit of data.items) {
      const img = el("img", { alt: `Thumbnail of segment ${hit.index + 1} of ${hit.source_name}`, width: "128", height: "72", loading: "lazy" });
      if (hit.thumbnail) setImage(img, hit.thumbnail);
      list.append(el("li", { class: "hit", "data-job": hit.job_id, "data-index": hit.index },
        hit.thumbnail ? img : null,
        el("div", {},
          el("div", { class: "hit-head" },
            el("a", { href: `#/jobs/${hit.job_id}?seg=${hit.index}`, text: hit.source_name }),
            el("span", { class: "times", text: span(hit.start_ms, hit.end_ms) }),
            badge(hit.state)),
          marked(hit.snippet, hit.marks))));
    }
    root.querySelector(".empty").hidden = data.items.length > 0;
    say(`${data.items.length} match${data.items.length === 1 ? "" : "es"}.`);
  } catch (e) { say(`Cannot search: ${e.message}`, true); }
}

// -- start ----------------------------------------------------------------------------------
document.getElementById("search-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const q = document.getElementById("search-q").value.trim();
  if (q) location.hash = `#/search?${new URLSearchParams({ q })}`;
});
document.getElementById("key-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const value = document.getElementById("api-key").value.trim();
  if (value) localStorage.setItem(KEY, value); else localStorage.removeItem(KEY);
  for (const url of blobCache.values()) URL.revokeObjectURL(url);
  blobCache.clear();
  route();
  say(value ? "API key saved in this browser." : "API key cleared.");
});
document.getElementById("api-key").value = apiKey();
window.addEventListener("hashchange", route);
route();
