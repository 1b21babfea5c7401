// framescribe review page: the entry module (a <script type="module">; no build step, no CDN). It routes
// the hash (#/, #/submit, #/jobs/<id>, #/search?q=, #/cameras/<name>) to the views in their own modules.
import { KEY, apiKey, forgetImages } from "./api.js";
import { say } from "./dom.js";
import { showCameras } from "./cameras.js";
import { showJob } from "./job.js";
import { showJobs } from "./jobs.js";
import { showSearch } from "./search.js";
import { showSubmit } from "./submit.js";

function current(id) { document.getElementById(id).setAttribute("aria-current", "page"); }

function route() {
  const hash = location.hash.slice(1) || "/";
  const [path, query] = hash.split("?");
  const params = new URLSearchParams(query || "");
  for (const a of document.querySelectorAll("nav a")) a.removeAttribute("aria-current");
  say("");
  let m;
  if (path === "/submit") { current("nav-submit"); showSubmit(); }
  else if ((m = path.match(/^\/jobs\/([0-9a-f]{32})$/))) showJob(m[1], params.get("seg"));
  else if (path === "/search") showSearch(params.get("q") || "");
  else if (path.startsWith("/cameras")) { current("nav-cameras"); showCameras(decodeURIComponent(path.slice(9))); }
  else { current("nav-jobs"); showJobs(); }
}

document.getElementById("search-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const q = document.getElementById("search-q").value.trim();
  if (q) location.hash = `#/search?${new URLSearchParams({ q })}`;
});
document.getElementById("key-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const value = document.getElementById("api-key").value.trim();
  if (value) localStorage.setItem(KEY, value); else localStorage.removeItem(KEY);
  forgetImages();
  route();
  say(value ? "API key saved in this browser." : "API key cleared.");
});
document.getElementById("api-key").value = apiKey();
window.addEventListener("hashchange", route);
route();
