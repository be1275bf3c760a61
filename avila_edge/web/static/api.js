// The REST client of the console: JSON in and out, the CSRF header on writes, one live stream.

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error) || `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
  }
}

function cookie(name) {
  for (const part of document.cookie.split(";")) {
    const [k, ...v] = part.trim().split("=");
    if (k === name) return decodeURIComponent(v.join("="));
  }
  return "";
}

/** Call the API. `body` is sent as JSON unless it is a string (sent as text/plain). */
export async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  const init = { method, headers, credentials: "same-origin" };
  if (method !== "GET" && method !== "HEAD") {
    const csrf = cookie("avila_csrf");
    if (csrf) headers["X-CSRF-Token"] = csrf;
  }
  if (body !== undefined) {
    if (typeof body === "string") {
      headers["Content-Type"] = "text/plain; charset=utf-8";
      init.body = body;
    } else {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
  }
  const response = await fetch(path, init);
  let data = null;
  const type = response.headers.get("Content-Type") || "";
  if (response.status !== 204 && type.includes("json")) {
    try {
      data = await response.json();
    } catch {
      data = null;
    }
  }
  if (!response.ok) {
    const err = new ApiError(response.status, data);
    err.retryAfter = response.headers.get("Retry-After");
    throw err;
  }
  return data;
}

export const point = (id) => encodeURIComponent(id);

/** One `EventSource` on /api/live shared by every page; listeners get (kind, data). */
export class LiveStream {
  constructor() {
    this.listeners = new Set();
    this.source = null;
    this.connected = false;
    this.onstate = () => {};
  }

  start() {
    if (this.source) return;
    const source = new EventSource("/api/live");
    this.source = source;
    const dispatch = (kind) => (msg) => {
      let data;
      try {
        data = JSON.parse(msg.data);
      } catch {
        return;
      }
      for (const fn of this.listeners) {
        try {
          fn(kind, data);
        } catch (exc) {
          console.error("live listener failed", exc);
        }
      }
    };
    source.addEventListener("twin", dispatch("twin"));
    source.addEventListener("event", dispatch("event"));
    source.onopen = () => this.setConnected(true);
    source.onerror = () => this.setConnected(false);
  }

  stop() {
    if (this.source) this.source.close();
    this.source = null;
    this.setConnected(false);
  }

  setConnected(value) {
    this.connected = value;
    this.onstate(value);
  }

  listen(fn) {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }
}
