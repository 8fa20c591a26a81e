// A shift-long session (docs/auth.md, "A shift-long session").
//
// - SessionKeeper renews the access token shortly before it expires, for as long as the
//   refresh cookie allows (the platform's auth.session_max_s, a 12 h shift by default). A
//   network failure is no end: it tries again until the platform answers.
// - Drafts keeps what she has written (a resolution note) in sessionStorage, per user and
//   alarm, so that it survives a reload and a new sign-in in this tab; signing out on purpose
//   forgets it (the tablet may be handed over).
// - Some minutes before the session's maximum, a banner among the alerts fixed at the top says
//   when it will end, so that she finishes what she is writing and signs in again in time
//   (renderSessionEnding).
// - When the session does end, the app keeps the last screen, marked as not up to date, under
//   a fixed notice she cannot miss, with the way to sign in again (sessionEndedNotice).

import { claims, refresh, sessionEndsAt, tokenLeftMs } from "./api.js";
import { h } from "./dom.js";
import { addTexts, clock, t } from "./i18n.js";

addTexts({
  nb: {
    "connection.ended": "Logget ut",
    "session.ended_title": "Du er logget ut",
    "session.ended_body": "Økten ble avsluttet kl. {time}. Skjermen viser det som var kjent da, og oppdateres ikke: nye alarmer vises ikke før du logger inn igjen.",
    "session.ended_drafts": "Notater du har begynt på, er tatt vare på.",
    "session.sign_in_again": "Logg inn igjen",
    "session.ending_title": "Økten avsluttes kl. {time}",
    "session.ending_body": "Du blir logget ut kl. {time} (om {minutes} min), når vaktens lengste økt er over. Skriv ferdig det du holder på med, og logg inn på nytt: notater du har begynt på, tas vare på.",
    "session.sign_in_now": "Logg inn på nytt nå",
  },
  en: {
    "connection.ended": "Signed out",
    "session.ended_title": "You are signed out",
    "session.ended_body": "The session ended at {time}. The screen shows what was known then and is not updated: new alarms are not shown until you sign in again.",
    "session.ended_drafts": "Notes you had started are kept.",
    "session.sign_in_again": "Sign in again",
    "session.ending_title": "The session ends at {time}",
    "session.ending_body": "You will be signed out at {time} (in {minutes} min), when a shift's longest session is over. Finish what you are doing and sign in again: notes you have started are kept.",
    "session.sign_in_now": "Sign in again now",
  },
});

// Renew this long before the access token expires (a fifth of its life, 30 s to 2 min).
const LEAD_MIN_MS = 30_000;
const LEAD_MAX_MS = 120_000;
const RETRY_MS = 15_000;
/** How long before the session's maximum the app warns her. */
export const SESSION_WARNING_MS = 10 * 60_000;

export class SessionKeeper {
  /**
   * @param {object} handlers
   * @param {() => void} handlers.onRenewed a new access token is in use
   * @param {() => void} handlers.onEnded the session cannot go on: sign in again
   * @param {(ends: Date) => void} handlers.onEnding the session's maximum is SESSION_WARNING_MS
   *   away or less
   */
  constructor({ onRenewed, onEnded, onEnding }) {
    this.onRenewed = onRenewed;
    this.onEnded = onEnded;
    this.onEnding = onEnding;
    this.timer = null;
    this.warning = null;
  }

  start() {
    this.stop();
    const ends = sessionEndsAt();
    if (ends) {
      const delay = Math.max(ends.getTime() - SESSION_WARNING_MS - Date.now(), 0);
      this.warning = setTimeout(() => this.onEnding(ends), Math.min(delay, 2 ** 31 - 1));
    }
    const { iat, exp } = claims() ?? {};
    if (!exp) return;
    const lifetime = (exp - (iat ?? exp)) * 1000;
    const lead = Math.min(Math.max(lifetime / 5, LEAD_MIN_MS), LEAD_MAX_MS);
    this.later(tokenLeftMs() - lead);
  }

  stop() {
    clearTimeout(this.timer);
    clearTimeout(this.warning);
    this.timer = null;
    this.warning = null;
  }

  later(ms) {
    this.timer = setTimeout(() => this.renew(), Math.min(Math.max(ms, 0), 2 ** 31 - 1));
  }

  async renew() {
    let ok;
    try {
      ok = await refresh();
    } catch {
      this.later(RETRY_MS); // not reachable: the connection banner says so; try again
      return;
    }
    if (!ok) {
      this.stop();
      this.onEnded();
      return;
    }
    this.start();
    this.onRenewed();
  }
}

const DRAFT_PREFIX = "tryggheim.draft.";

/** Map-like (get, set, delete) notes being written, kept per user and alarm in sessionStorage. */
export class Drafts {
  constructor() {
    this.owner = "-";
  }

  key(id) {
    // After the session ended (no token) the notes are still hers, on the screen she keeps.
    this.owner = claims()?.sub ?? this.owner;
    return `${DRAFT_PREFIX}${this.owner}.${id}`;
  }

  get(id) {
    return sessionStorage.getItem(this.key(id)) ?? undefined;
  }

  set(id, text) {
    if (text) sessionStorage.setItem(this.key(id), text);
    else this.delete(id);
  }

  delete(id) {
    sessionStorage.removeItem(this.key(id));
  }

  /** Forget every draft in this tab (signing out on purpose). */
  clear() {
    for (const key of Object.keys(sessionStorage)) {
      if (key.startsWith(DRAFT_PREFIX)) sessionStorage.removeItem(key);
    }
  }
}

/** The fixed notice over the last screen when the session has ended (null: it has not). */
export function renderSessionEnded(element, ended, onSignInAgain) {
  element.hidden = !ended;
  document.body.classList.toggle("session-has-ended", Boolean(ended));
  if (!ended) { element.replaceChildren(); return; }
  if (element.dataset.at === String(ended.at.getTime()) && element.dataset.lang === document.documentElement.lang) return;
  element.dataset.at = String(ended.at.getTime());
  element.dataset.lang = document.documentElement.lang;
  element.replaceChildren(
    h("div", { role: "alert" },
      h("h2", { id: "session-ended-title" }, h("span", { "aria-hidden": "true" }, "⚠ "), t("session.ended_title")),
      h("p", {}, t("session.ended_body", { time: clock(ended.at) }), " ", t("session.ended_drafts"))),
    h("button", { type: "button", class: "primary", "data-key": "sign-in-again", onclick: onSignInAgain },
      t("session.sign_in_again")),
  );
}

/** The banner among the fixed alerts while the session's maximum is near (null: it is not). */
export function renderSessionEnding(element, ends, onSignInNow) {
  element.hidden = !ends;
  if (!ends) { element.replaceChildren(); delete element.dataset.at; return; }
  const minutes = Math.max(Math.ceil((ends.getTime() - Date.now()) / 60_000), 0);
  const key = `${ends.getTime()} ${minutes} ${document.documentElement.lang}`;
  if (element.dataset.at === key) return;
  const first = element.dataset.at === undefined;
  element.dataset.at = key;
  const time = clock(ends);
  element.replaceChildren(
    // Said once, when it appears; the minutes counting down are not read out each time.
    h("div", { role: first ? "alert" : null },
      h("h2", { id: "session-ending-title" }, h("span", { "aria-hidden": "true" }, "⚠ "),
        t("session.ending_title", { time })),
      h("p", {}, t("session.ending_body", { time, minutes }))),
    h("button", { type: "button", "data-key": "sign-in-now", onclick: onSignInNow }, t("session.sign_in_now")),
  );
}
