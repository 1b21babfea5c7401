// framescribe review page: the job page's export form (downloads go through fetch() to carry the key).
import { api } from "./api.js";
import { el, say } from "./dom.js";

/** Wire the export form of job ``jobId``'s page. */
export function wireExports(exportsForm, jobId) {
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
}
