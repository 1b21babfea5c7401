// framescribe review page: the camera list (live streams) and one camera's live timeline, alerts highlighted.
import { apiJSON } from "./api.js";
import { el, mount, onLeave, say } from "./dom.js";

let timer = null;
let main = null;

function cell(text) { return el("td", { text: text === null || text === undefined ? "" : String(text) }); }

function statusBadge(s) {
  return el("span", { class: `state state-${s.status}`, text: s.status + (s.reason ? ` (${s.reason})` : "") });
}

async function list() {
  const data = await apiJSON("/v1/streams");
  const body = el("tbody");
  for (const s of data.items) {
    body.append(el("tr", {},
      el("td", {}, el("a", { href: `#/cameras/${encodeURIComponent(s.name)}`, text: s.name })),
      el("td", {}, statusBadge(s)), cell(s.desired), cell(s.url)));
  }
  main.replaceChildren(el("section", { "aria-labelledby": "cams-h" },
    el("h2", { id: "cams-h", text: "Cameras" }),
    data.items.length ? el("table", { class: "jobs" },
      el("thead", {}, el("tr", {}, ...["Camera", "Status", "Wanted", "Source"].map((h) => el("th", { scope: "col", text: h })))),
      body) : el("p", { class: "empty", text: "No cameras. Add one with POST /v1/streams or `framescribe watch`." })));
}

async function one(name) {
  const s = await apiJSON(`/v1/streams/${encodeURIComponent(name)}`);
  const rows = el("ol", { class: "segments live", reversed: true });
  for (const seg of [...s.recent].reverse()) {
    rows.append(el("li", { class: seg.alert ? "alert" : (seg.static ? "static" : "") },
      el("strong", { text: `${seg.start_utc} – ${seg.end_utc}` }), " ",
      el("span", { class: "state", text: seg.alert ? "ALERT" : seg.state }), " ",
      el("span", { text: seg.description || "" })));
  }
  const gaps = el("ul", { class: "gaps" });
  for (const g of s.gaps) gaps.append(el("li", { text: `${g.start_utc} – ${g.end_utc}: ${g.reason}` }));
  const digests = el("ul", { class: "digests" });
  for (const d of s.digests) digests.append(el("li", { text: `${d.start_utc} – ${d.end_utc}: ${d.text}` }));
  main.replaceChildren(el("section", { "aria-labelledby": "cam-h" },
    el("h2", { id: "cam-h", text: `Camera ${s.name}` }),
    el("p", {}, statusBadge(s), ` · ${s.segments} segments · ${s.alerts} alerts · `,
      s.job_id ? el("a", { href: `#/jobs/${s.job_id}`, text: "full timeline" }) : ""),
    el("h3", { text: "Latest segments" }), rows,
    el("h3", { text: "Gaps" }), s.gaps.length ? gaps : el("p", { text: "none" }),
    el("h3", { text: "Digests" }), s.digests.length ? digests : el("p", { text: "none yet" })));
}

export function showCameras(name) {
  if (timer) clearInterval(timer);
  main = mount(null);
  onLeave(() => clearInterval(timer));
  const draw = () => (name ? one(name) : list()).catch((err) => say(err.message, true));
  draw();
  timer = setInterval(() => { if (location.hash.startsWith("#/cameras")) draw(); else clearInterval(timer); }, 5000);
}
