// framescribe review page: DOM and formatting helpers shared by the views (model text only ever goes in
// as textContent, through el()).
export const TERMINAL = new Set(["done", "partial", "failed", "cancelled"]);
export const FINISHED_SEG = new Set(["done", "static", "failed", "cancelled"]);
export const DESCRIBED = new Set(["done", "static"]);
const main = document.getElementById("main");
let cleanup = [];

export function say(msg, isError = false) {
  const box = document.getElementById("status");
  box.textContent = msg || "";
  box.classList.toggle("error", Boolean(isError));
}

export function el(tag, attrs = {}, ...children) {
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

export function clock(ms, hours = false) {
  const t = Math.max(0, Math.floor((ms || 0) / 1000));
  const h = Math.floor(t / 3600), m = Math.floor((t % 3600) / 60), s = t % 60;
  const p = (n) => String(n).padStart(2, "0");
  return h || hours ? `${p(h)}:${p(m)}:${p(s)}` : `${p(m)}:${p(s)}`;
}
export function span(a, b) { const hours = b >= 3600000; return `${clock(a, hours)}–${clock(b, hours)}`; }
export function fmtInt(n) { return Number(n || 0).toLocaleString("en-US"); }
export function fmtDate(iso) {
  if (!iso) return "—";
  const d = new Date(iso), p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}`;
}
export function doneCount(progress) { return (progress.done || 0) + (progress.static || 0); }
export function totalTokens(u) { return (u.input_tokens || 0) + (u.output_tokens || 0) + (u.video_tokens || 0); }
export function badge(state) { return el("span", { class: `state-badge s-${state}`, text: state }); }

/** Leave the current view (its onLeave callbacks run) and show a template's copy (or nothing). */
export function mount(templateId) {
  for (const fn of cleanup) fn();
  cleanup = [];
  if (templateId) main.replaceChildren(document.getElementById(templateId).content.cloneNode(true));
  else main.replaceChildren();
  return main;
}

/** Run fn when the current view is replaced (timers, streams). */
export function onLeave(fn) { cleanup.push(fn); }
