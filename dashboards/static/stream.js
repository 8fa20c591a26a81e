// The live stream (GET /api/v1/stream, server-sent events), read with fetch since EventSource
// cannot send the Authorization header.
//
// The nurse must never trust a frozen screen, so the stream watches itself: the platform sends
// a ": keepalive" comment after 15 s without events, and a stream that has said nothing for
// STALE_AFTER_MS is treated as dead ("stale"), dropped and opened again. A stream that ends or
// fails is "lost". Either way the app says so plainly until the stream is live again, and then
// reloads what it shows (events may have been missed in between).

import { SignedOut, VIEW_HEADER, authHeaders, refuseSignedOut } from "./api.js";

export const STALE_AFTER_MS = 40_000;
const CONNECT_TIMEOUT_MS = 15_000;
const RETRY_DELAYS_MS = [1000, 2000, 4000, 8000, 15000];

export class LiveStream {
  /**
   * @param {object} handlers
   * @param {(type: string, data: object) => void} handlers.onEvent
   * @param {(state: string, detail: object) => void} handlers.onState
   *   state: "connecting" | "live" | "stale" | "lost"
   * @param {(reason: string) => void} handlers.onSignedOut
   * @param {() => void} handlers.onResumed the stream is connected again after a token renewal
   *   (it stayed live): what happened while it reconnected is to be loaded now
   * @param {string} view the live session (api.openView): its reconnections are one session in
   *   the audit log
   */
  constructor({ onEvent, onState, onSignedOut, onResumed, view }) {
    this.view = view;
    this.onEvent = onEvent;
    this.onState = onState;
    this.onSignedOut = onSignedOut;
    this.onResumed = onResumed;
    this.state = "connecting";
    this.lastHeard = 0; // Date.now() of the last bytes received
    this.lastLive = null; // the last moment the stream was confirmed alive
    this.controller = null;
    this.stopped = true;
    this.wake = null;
    this.renewing = false; // the connection is being dropped for a renewed token
    this.resuming = false; // and the new one has not said anything yet
  }

  start() {
    if (!this.stopped) return;
    this.stopped = false;
    this.watchdog = setInterval(() => this.check(), 1000);
    this.wakeUp = () => this.check();
    document.addEventListener("visibilitychange", this.wakeUp);
    window.addEventListener("online", this.onOnline = () => this.reconnectNow());
    this.run();
  }

  stop() {
    this.stopped = true;
    clearInterval(this.watchdog);
    document.removeEventListener("visibilitychange", this.wakeUp);
    window.removeEventListener("online", this.onOnline);
    this.controller?.abort();
    this.wake?.();
  }

  /** A new access token: connect again with it at once, while the old one still works (the
   * platform ends a stream when its token expires). */
  renew() {
    if (this.stopped || this.state !== "live") return;
    this.renewing = true;
    this.controller?.abort();
  }

  /** Give up waiting for the next attempt and connect at once. */
  reconnectNow() {
    if (this.state === "live") return;
    this.wake?.();
  }

  setState(state, detail = {}) {
    // Once not live, the first reason stands until the stream is live again (a stale stream
    // whose reconnection fails is still the same outage).
    if (this.state === "stale" && state === "lost") return;
    if (this.state === "live" && state === "lost") this.lastLive = new Date();
    if (this.state === "live" && state === "stale") this.lastLive = new Date(this.lastHeard);
    const changed = state !== this.state;
    this.state = state;
    if (changed) this.onState(state, { ...detail, lastLive: this.lastLive });
  }

  /** Once a second (and when the tablet wakes up): has the live stream gone quiet, or is an
   * attempt to connect hanging? */
  check() {
    const now = Date.now();
    if (this.state === "live" && now - this.lastHeard > STALE_AFTER_MS) {
      this.staleAbort = true;
      this.setState("stale", { quietMs: now - this.lastHeard });
      this.controller?.abort();
    } else if (this.state !== "live" && this.attemptStarted
               && now - this.attemptStarted > CONNECT_TIMEOUT_MS) {
      this.attemptStarted = 0;
      this.controller?.abort();
    }
  }

  async run() {
    let attempt = 0;
    while (!this.stopped) {
      this.staleAbort = false;
      try {
        await this.listen(() => { attempt = 0; });
      } catch (error) {
        if (this.stopped) return;
        if (this.renewing) {
          this.renewing = false;
          this.resuming = true;
          continue;
        }
        if (error instanceof SignedOut) {
          this.stop();
          this.onSignedOut(error.message);
          return;
        }
        if (!this.staleAbort) this.setState("lost", { error });
      }
      const delay = RETRY_DELAYS_MS[Math.min(attempt, RETRY_DELAYS_MS.length - 1)];
      attempt += 1;
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, delay);
        this.wake = () => { clearTimeout(timer); resolve(); };
      });
      this.wake = null;
    }
  }

  async listen(onOpen) {
    this.controller = new AbortController();
    this.attemptStarted = Date.now();
    const response = await fetch("api/v1/stream", {
      headers: { ...authHeaders(), Accept: "text/event-stream", [VIEW_HEADER]: this.view },
      signal: this.controller.signal,
      cache: "no-store",
    });
    refuseSignedOut(response);
    if (!response.ok) throw new Error(`live stream: HTTP ${response.status}`);
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) throw new Error("live stream ended");
      this.lastHeard = Date.now();
      this.attemptStarted = 0;
      if (this.state !== "live") {
        this.resuming = false;
        onOpen();
        this.setState("live");
      } else if (this.resuming) {
        // Only now, subscribed again, may a reload be trusted: one made before this point
        // could miss what was raised before the new stream's subscription.
        this.resuming = false;
        this.onResumed();
      }
      buffer += value.replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        this.dispatch(block);
      }
    }
  }

  dispatch(block) {
    let type = "message";
    const data = [];
    for (const line of block.split("\n")) {
      if (line.startsWith(":")) continue; // a comment: ": connected", ": keepalive"
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "event") type = value;
      else if (field === "data") data.push(value);
    }
    if (!data.length) return;
    try {
      this.onEvent(type, JSON.parse(data.join("\n")));
    } catch (error) {
      console.error("live stream: bad event", error);
    }
  }
}
