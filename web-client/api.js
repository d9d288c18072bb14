// The REST API, with the server's JSON errors turned into exceptions that keep their code
// and field (so the launch form can show an error beside the field it concerns).
//
// Credentials: the page never keeps the master token. It trades the token from its URL
// fragment once for a session credential of its own (POST /api/session), keeps that in
// localStorage, which belongs to this origin alone (a cookie would go to every port of the
// host), and sends it as `Authorization: Bearer` and as a WebSocket subprotocol. Signing out
// revokes it on the server.

const STORAGE_KEY = "agentgate.session";

export class ApiError extends Error {
  constructor(status, body) {
    super(body?.error ?? `HTTP ${status}`);
    this.status = status;
    this.code = body?.code;
    this.field = body?.field;
    this.conflicts = body?.conflicts ?? [];
  }
}

/// The session credential, or null when signed out.
export function credential() {
  try { return localStorage.getItem(STORAGE_KEY); } catch { return null; }
}

function authorization() {
  const value = credential();
  return value ? { Authorization: `Bearer ${value}` } : {};
}

async function call(method, path, body) {
  return callFor(method, path, body, (text) => (text ? JSON.parse(text) : null));
}

async function callFor(method, path, body, read) {
  const init = { method, headers: authorization() };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const text = await response.text();
  if (response.status === 401) window.dispatchEvent(new Event("agentgate:signed-out"));
  if (!response.ok) throw new ApiError(response.status, text ? JSON.parse(text) : null);
  return read(text);
}

/// Whether the address carries a token to sign in with.
export function hasTokenInAddress() {
  return /(?:^#|&)token=/.test(location.hash);
}

/// First visit: the token is in the URL fragment (never sent in a URL). Take it out of the
/// address bar and the history at once, trade it for a session, and forget it. Answers
/// "signed-in", "refused" (a token that is wrong or was rotated) or "signed-out".
export async function signIn() {
  const match = location.hash.match(/(?:^#|&)token=([^&]+)/);
  if (match) {
    const rest = location.hash.replace(/(?:^#|&)token=[^&]+/, "").replace(/^&/, "");
    history.replaceState(null, "", location.pathname + location.search + (rest ? `#${rest}` : ""));
    const response = await fetch("/api/session", { method: "POST", headers: { Authorization: `Bearer ${decodeURIComponent(match[1])}` } });
    if (!response.ok) return "refused";
    const { session } = await response.json();
    localStorage.setItem(STORAGE_KEY, session);
  }
  return (await isSignedIn()) ? "signed-in" : "signed-out";
}

/// Whether the stored credential is still live (it expires, and a token rotation or a sign-out
/// elsewhere ends it).
export async function isSignedIn() {
  if (!credential()) return false;
  const check = await fetch("/api/session", { headers: authorization() });
  if (check.status === 401) localStorage.removeItem(STORAGE_KEY);
  return check.ok;
}

/// Revokes the session on the server and forgets it here.
export async function signOut() {
  try {
    await fetch("/api/session", { method: "DELETE", headers: authorization() });
  } finally {
    localStorage.removeItem(STORAGE_KEY);
  }
}

export const api = {
  capabilities: () => call("GET", "/api/agents/capabilities"),
  refreshCapabilities: () => call("POST", "/api/agents/capabilities/refresh"),
  launch: (request) => call("POST", "/api/agents/jobs", request),
  kill: (id) => call("DELETE", `/api/agents/jobs/${encodeURIComponent(id)}`),
  killAll: () => call("DELETE", "/api/agents/jobs"),
  deleteJob: (id) => call("POST", `/api/agents/jobs/${encodeURIComponent(id)}/delete`),
  /** A page of the job list, newest first, older than `cursor` (a page's nextCursor). */
  job: (id) => call("GET", `/api/agents/jobs/${encodeURIComponent(id)}`),
  /** A worktree job's change: the summary with each file's piece of the diff. */
  diff: (id) => call("GET", `/api/agents/jobs/${encodeURIComponent(id)}/diff?format=json`),
  /** The unified diff as text (for a download). */
  patch: (id) => callFor("GET", `/api/agents/jobs/${encodeURIComponent(id)}/diff`, undefined, (text) => text),
  apply: (id, mode) => call("POST", `/api/agents/jobs/${encodeURIComponent(id)}/apply`, { mode }),
  discard: (id) => call("POST", `/api/agents/jobs/${encodeURIComponent(id)}/discard`),
  jobs: (cursor, limit = 100) => call("GET", `/api/agents/jobs?limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`),
};
