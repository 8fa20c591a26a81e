// The care platform's REST API, with the access token of this tab.
// The token lives in sessionStorage: closing the tab signs out.

const TOKEN_KEY = "tryggheim.token";
// A request that hangs (a dead network that neither answers nor fails) must not hold up every
// later reload: it is given up after this long.
const REQUEST_TIMEOUT_MS = 15_000;

export class SignedOut extends Error {}

export class HttpError extends Error {
  constructor(status, detail) {
    super(typeof detail === "string" ? detail : `HTTP ${status}`);
    this.status = status;
    this.detail = detail;
  }
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function signOut() {
  sessionStorage.removeItem(TOKEN_KEY);
}

/** The token's claims (for the name shown and the subject of "acknowledged by you"); the
 * platform checks the token, this only reads it. */
export function claims() {
  const value = token();
  if (!value) return null;
  try {
    const payload = value.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const json = decodeURIComponent([...atob(payload)]
      .map((c) => `%${c.charCodeAt(0).toString(16).padStart(2, "0")}`).join(""));
    return JSON.parse(json);
  } catch {
    return null;
  }
}

/** POST /api/v1/auth/token; true when signed in, false for wrong credentials. */
export async function signIn(username, password) {
  const response = await fetch("api/v1/auth/token", {
    method: "POST",
    body: new URLSearchParams({ username, password }),
  });
  if (response.status === 400 || response.status === 401) return false;
  if (!response.ok) throw new HttpError(response.status, await detailOf(response));
  sessionStorage.setItem(TOKEN_KEY, (await response.json()).access_token);
  return true;
}

export function authHeaders() {
  const value = token();
  if (!value) throw new SignedOut("not signed in");
  return { Authorization: `Bearer ${value}` };
}

/** A request to the API; the parsed JSON (or null), with the response for its headers. */
export async function request(path, { method = "GET", body, signal } = {}) {
  const headers = { ...authHeaders(), Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method, headers, cache: "no-store",
    signal: signal ?? AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  refuseSignedOut(response);
  if (!response.ok) throw new HttpError(response.status, await detailOf(response));
  const data = response.status === 204 ? null : await response.json();
  return { data, response };
}

/** 401: the session has expired; 403: this user (an admin, say) has no care role. Either
 * way the nurse app cannot go on with this token. */
export function refuseSignedOut(response) {
  if (response.status === 401 || response.status === 403) {
    signOut();
    throw new SignedOut(response.status === 401 ? "session expired" : "forbidden");
  }
}

export async function get(path, options) {
  return (await request(path, options)).data;
}

export async function post(path, body) {
  return (await request(path, { method: "POST", body })).data;
}

async function detailOf(response) {
  try {
    const body = await response.json();
    if (typeof body.detail === "string") return body.detail;
    return body.detail?.message ?? JSON.stringify(body.detail ?? body);
  } catch {
    return `HTTP ${response.status}`;
  }
}
