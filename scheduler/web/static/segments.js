// framescribe review page: one segment's card (times, state, description, badges, thumbnails).
import { setImage } from "./api.js";
import { DESCRIBED, TERMINAL, badge, el, fmtInt, span } from "./dom.js";

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

export function pickFrames(urls, count) {
  if (urls.length <= count) return urls.map((u, i) => [u, i]);
  const out = [];
  for (let k = 0; k < count; k++) { const i = Math.round((k * (urls.length - 1)) / (count - 1)); out.push([urls[i], i]); }
  return out;
}

/** One segment's card; ``jobState`` decides whether a failed segment offers a retry. */
export function segCard(seg, jobState, { openFrames, retry }) {
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
    if (TERMINAL.has(jobState)) li.append(el("button", { type: "button", class: "retry", text: "Retry failed segments", onclick: retry }));
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

