// framescribe review page: the jobs list (refreshed while any job on it is still moving).
import { apiJSON } from "./api.js";
import { TERMINAL, badge, clock, doneCount, el, fmtDate, fmtInt, mount, onLeave, say, totalTokens } from "./dom.js";

export function showJobs() {
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
  onLeave(() => clearTimeout(timer));
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
