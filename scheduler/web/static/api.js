// framescribe review page: the REST client. Every request carries the API key from localStorage as
// "Authorization: Bearer"; images, downloads and the progress stream go through fetch() for that reason.
export const KEY = "framescribe.apiKey";
const blobCache = new Map();

export function apiKey() { return localStorage.getItem(KEY) || ""; }

export function authHeaders(extra) {
  const h = new Headers(extra || {});
  const key = apiKey();
  if (key) h.set("Authorization", "Bearer " + key);
  return h;
}

export async function api(path, opts = {}) {
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

export async function apiJSON(path, opts) { return (await api(path, opts)).json(); }

export function setImage(img, url) {
  if (!apiKey()) { img.src = url; return; }
  if (blobCache.has(url)) { img.src = blobCache.get(url); return; }
  api(url).then((r) => r.blob()).then((b) => {
    const obj = URL.createObjectURL(b);
    blobCache.set(url, obj);
    img.src = obj;
  }).catch(() => { img.alt += " (not available)"; });
}

export function forgetImages() {
  for (const url of blobCache.values()) URL.revokeObjectURL(url);
  blobCache.clear();
}
