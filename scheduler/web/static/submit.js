// framescribe review page: submit a video (path, URL or upload); an estimate (dry run) comes first.
import { apiJSON } from "./api.js";
import { clock, el, fmtInt, mount, say } from "./dom.js";

export function showSubmit() {
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
