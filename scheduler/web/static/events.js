// framescribe review page: a job's server-sent events, read through fetch() so the request carries the
// API key (EventSource cannot send headers). The server pushes changes; onEvent(name) runs per event.
import { api } from "./api.js";

/** Read the stream at ``path`` until its ``end`` event (or ``signal`` aborts). */
export async function followEvents(path, signal, onEvent) {
  const res = await api(path, { signal, headers: { Accept: "text/event-stream" } });
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value;
    let cut;
    while ((cut = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, cut);
      buf = buf.slice(cut + 2);
      const event = (block.match(/^event: (.*)$/m) || [])[1];
      if (!event) continue;
      onEvent(event);
      if (event === "end") { reader.cancel(); return; }
    }
  }
}
