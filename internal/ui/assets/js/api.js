// api.js: the page's only door to medic — JSON requests through the API
// (same origin; the session cookie rides along) and the event stream.

export class HTTPError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

let csrf = "";
let inflight = new AbortController();

// abortAll cancels every request in flight (on sign-out: their answers
// would be 401s for a session that is gone).
export function abortAll() {
  inflight.abort();
  inflight = new AbortController();
}

// setCSRF sets the token every mutation carries (from the session document).
export function setCSRF(token) {
  csrf = token || "";
}

// request sends method path with an optional JSON body and returns the
// decoded JSON answer, or throws HTTPError with the API's {"error"} text.
export async function request(method, path, body) {
  const headers = { Accept: "application/json" };
  if (method !== "GET" && method !== "HEAD") {
    headers["X-CSRF-Token"] = csrf;
  }
  const init = { method, headers, credentials: "same-origin", cache: "no-store", signal: inflight.signal };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(path, init);
  } catch (e) {
    throw new HTTPError(0, "cannot reach medic: " + e.message);
  }
  const text = await resp.text();
  let doc = null;
  try {
    doc = text ? JSON.parse(text) : null;
  } catch {
    doc = null;
  }
  if (!resp.ok) {
    const msg = doc && doc.error ? doc.error : `HTTP ${resp.status}`;
    throw new HTTPError(resp.status, msg);
  }
  return doc;
}

export const get = (path) => request("GET", path);
export const post = (path, body) => request("POST", path, body ?? {});

// optional fetches an endpoint another component may not provide yet:
// it resolves to null on 404 (the caller hides its panel).
export async function optional(path) {
  try {
    return await get(path);
  } catch (e) {
    if (e.status === 404 || e.status === 405) return null;
    throw e;
  }
}

// stream reads the server-sent event stream at path and calls onEvent with
// each decoded event. It reconnects with a capped backoff and reports its
// state through onState("live" | "connecting" | "down", detail). The SSE
// events carry their kind as the event name, which EventSource only delivers
// to listeners registered by name, so the stream is parsed here instead.
export function stream(path, onEvent, onState) {
  let stopped = false;
  let ctrl = null;
  let delay = 500;
  async function run(first) {
    while (!stopped) {
      onState("connecting");
      ctrl = new AbortController();
      try {
        const resp = await fetch(path + (first ? "" : (path.includes("?") ? "&" : "?") + "history=0"), {
          signal: ctrl.signal, credentials: "same-origin", cache: "no-store", headers: { Accept: "text/event-stream" },
        });
        if (!resp.ok) throw new HTTPError(resp.status, `event stream: HTTP ${resp.status}`);
        onState("live");
        delay = 500;
        first = false;
        const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += value;
          let cut;
          while ((cut = buf.indexOf("\n\n")) >= 0) {
            const block = buf.slice(0, cut);
            buf = buf.slice(cut + 2);
            const data = block.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
            if (!data) continue;
            try {
              onEvent(JSON.parse(data));
            } catch {
              /* a malformed event is skipped, the stream goes on */
            }
          }
        }
      } catch (e) {
        if (stopped) return;
        onState("down", e.status === 401 ? "signed out" : e.message);
        if (e.status === 401) return;
      }
      if (stopped) return;
      onState("down", "reconnecting");
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 10000);
    }
  }
  run(true);
  return () => {
    stopped = true;
    if (ctrl) ctrl.abort();
  };
}
