// The care platform's REST API, with the access token of this tab.
//
// The access token lives only in this module's memory: a script injected into the page could
// still use it while the page is open, but cannot carry it away to use later, and it is gone
// when the tab closes. The session is kept by the refresh token, an httpOnly cookie no script
// can read (SameSite=Strict, path /api/v1/auth): on a reload, and shortly before the access
// token expires, refresh() asks for a new access token (the cookie rotates each time), until
// the session's maximum (auth.session_max_s, a 12 h shift) — see docs/auth.md.

// A request that hangs (a dead network that neither answers nor fails) must not hold up every
// later reload: it is given up after this long.
const REQUEST_TIMEOUT_MS = 15_000;

let accessToken = null;
let sessionEnds = null; // Date: the refresh cookie's absolute end, on this tablet's clock
let sessionEndsSaid; // the end as the platform said it (its clock)
// When the token expires, on this tablet's clock: from the answer's expires_in, since the
// tablet's clock may differ from the platform's.
let expiresAt = 0;

export class SignedOut extends Error {}

export class HttpError extends Error {
  constructor(status, detail, problem = null) {
    super(typeof detail === "string" ? detail : `HTTP ${status}`);
    this.status = status;
    this.detail = detail;
    this.problem = problem; // the RFC 9457 problem body, when there was one
  }
}

export function token() {
  return accessToken;
}

/** When the session ends at the latest, on this tablet's clock (null: not known). */
export function sessionEndsAt() {
  return sessionEnds;
}

/** Forget the access token of this tab (the session's cookie stays: see endSession). */
export function signOut() {
  accessToken = null;
}

/** Sign out for good: the platform revokes the session's refresh tokens. */
export async function endSession() {
  accessToken = null;
  sessionEnds = null;
  sessionEndsSaid = undefined;
  try {
    await fetch("api/v1/auth/logout", { method: "POST", signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
  } catch {
    // Offline: the cookie ends by itself at the session's maximum.
  }
}

/** Milliseconds until the access token expires (negative: it has). */
export function tokenLeftMs() {
  return expiresAt - Date.now();
}

function keep(body) {
  accessToken = body.access_token;
  expiresAt = Date.now() + body.expires_in * 1000;
  // The platform says when on its own clock; the token's issue time tells how far this
  // tablet's clock is from it. A renewal in the same session keeps the end as it was.
  if (body.session_expires_at !== sessionEndsSaid) {
    const issued = (claims()?.iat ?? 0) * 1000 || Date.now();
    sessionEnds = body.session_expires_at
      ? new Date(Date.now() + Date.parse(body.session_expires_at) - issued) : null;
    sessionEndsSaid = body.session_expires_at;
  }
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
  keep(await response.json());
  return true;
}

let refreshing = null;

/** A new access token for the session's refresh cookie: true when the session goes on, false
 * when it has ended (signed out, revoked, the shift's maximum reached, the account changed);
 * throws when the platform cannot be reached. Tabs take turns (the cookie is used once), and
 * calls made meanwhile in this tab share one request. */
export function refresh() {
  refreshing ??= (async () => {
    const ask = async () => {
      const response = await fetch("api/v1/auth/refresh", {
        method: "POST", cache: "no-store", signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      });
      if (response.status === 401 || response.status === 400) {
        accessToken = null;
        return false;
      }
      if (!response.ok) throw new HttpError(response.status, await detailOf(response));
      keep(await response.json());
      return true;
    };
    try {
      return navigator.locks ? await navigator.locks.request("tryggheim-refresh", ask) : await ask();
    } finally {
      refreshing = null;
    }
  })();
  return refreshing;
}

/** A new opening of the view `name` (overview, patient, live): the loads sent with it are
 * audited once per patient for the whole opening, its refreshes included (docs/auth.md, "What
 * the audit log records"). */
export function openView(name) {
  const id = [...crypto.getRandomValues(new Uint8Array(16))].map((b) => b.toString(16).padStart(2, "0")).join("");
  return `${name}/${id}`;
}

export const VIEW_HEADER = "X-Tryggheim-View";

export function authHeaders() {
  const value = token();
  if (!value) throw new SignedOut("not signed in");
  return { Authorization: `Bearer ${value}` };
}

/** A request to the API; the parsed JSON (or null), with the response for its headers. An
 * expired access token (a tablet that slept past its refresh) is renewed once and the request
 * sent again. `view`: the view opening (openView) a read belongs to. */
export async function request(path, { method = "GET", body, signal, view } = {}) {
  const send = () => {
    const headers = { ...authHeaders(), Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (view) headers[VIEW_HEADER] = view;
    return fetch(path, {
      method, headers, cache: "no-store",
      signal: signal ?? AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  };
  let response = await send();
  if (response.status === 401 && await refresh().catch(() => false)) response = await send();
  refuseSignedOut(response);
  if (!response.ok) {
    const problem = await problemOf(response);
    throw new HttpError(response.status, problemText(problem, response.status), problem);
  }
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

async function problemOf(response) {
  try {
    return await response.json();
  } catch {
    return null;
  }
}

function problemText(body, status) {
  if (!body) return `HTTP ${status}`;
  if (typeof body.detail === "string") return body.detail;
  return body.detail?.message ?? JSON.stringify(body.detail ?? body);
}

async function detailOf(response) {
  return problemText(await problemOf(response), response.status);
}
