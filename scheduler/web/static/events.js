// framescribe review page: server-sent events read through fetch() so the request carries the API key
// (EventSource cannot send headers): a job's pushed progress, and the streamed answers of /v1/ask.
import { api } from "./api.js";

/** Call onEvent(name, data) for each event of a text/event-stream body; data is the joined data lines.
 *  Stops early when onEvent returns true. */
export async function readEvents(body, onEvent) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  const handle = (block) => {
    let name = "message", data = "", seen = false;
    for (const line of block.split("\n")) {
      if (line.startsWith("event:")) { name = line.slice(6).trim(); seen = true; }
      else if (line.startsWith("data:")) { data += line.slice(5).trim(); seen = true; }
    }
    return seen ? onEvent(name, data) : false;
  };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += value;
    let cut;
    while ((cut = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, cut);
      buf = buf.slice(cut + 2);
      if (handle(block)) { reader.cancel(); return; }
    }
  }
  if (buf.trim()) handle(buf);
}

/** Follow a job's event stream at ``path`` until its ``end`` event (or ``signal`` aborts). */
export async function followEvents(path, signal, onEvent) {
  const res = await api(path, { signal, headers: { Accept: "text/event-stream" } });
  await readEvents(res.body, (name) => { onEvent(name); return name === "end"; });
}
