// The REST API, with the server's JSON errors turned into exceptions that keep their code
// and field (so the launch form can show an error beside the field it concerns).

export class ApiError extends Error {
  constructor(status, body) {
    super(body?.error ?? `HTTP ${status}`);
    this.status = status;
    this.code = body?.code;
    this.field = body?.field;
  }
}

async function call(method, path, body) {
  const init = { method, headers: {} };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const text = await response.text();
  const json = text ? JSON.parse(text) : null;
  if (!response.ok) throw new ApiError(response.status, json);
  return json;
}

/// First visit: the token is in the URL fragment (never sent in a URL). Trade it once for
/// an HttpOnly cookie, then take it out of the address bar and the history.
export async function signIn() {
  const match = location.hash.match(/(?:^#|&)token=([^&]+)/);
  if (match) {
    const rest = location.hash.replace(/(?:^#|&)token=[^&]+/, "").replace(/^&/, "");
    history.replaceState(null, "", location.pathname + location.search + (rest ? `#${rest}` : ""));
    const response = await fetch("/api/session", { method: "POST", headers: { Authorization: `Bearer ${decodeURIComponent(match[1])}` } });
    if (!response.ok) return false;
  }
  const check = await fetch("/api/session");
  return check.ok;
}

export const api = {
  capabilities: () => call("GET", "/api/agents/capabilities"),
  refreshCapabilities: () => call("POST", "/api/agents/capabilities/refresh"),
  launch: (request) => call("POST", "/api/agents/jobs", request),
  kill: (id) => call("DELETE", `/api/agents/jobs/${encodeURIComponent(id)}`),
  killAll: () => call("DELETE", "/api/agents/jobs"),
};
