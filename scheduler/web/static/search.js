// framescribe review page: search results, matches marked.
import { apiJSON, setImage } from "./api.js";
import { badge, el, mount, say, span } from "./dom.js";

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

export async function showSearch(query) {
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
