// The platform's own health, for coordinators and admins: a banner while it is degraded
// (GET /api/v1/platform/status, from the same checks as IT's alerts). A nurse is not allowed
// to ask (403): the watch then stops, and she keeps her connection banner only.

import { authHeaders } from "./api.js";

const POLL_MS = 30_000;
const REQUEST_TIMEOUT_MS = 15_000;

export class PlatformWatch {
  constructor(onChange) {
    this.onChange = onChange;
    this.timer = null;
  }

  start() {
    this.stop();
    this.poll();
  }

  stop() {
    clearTimeout(this.timer);
    this.timer = null;
  }

  async poll() {
    let response;
    try {
      response = await fetch("api/v1/platform/status", {
        headers: { ...authHeaders(), Accept: "application/json" }, cache: "no-store",
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      });
    } catch {
      // The connection banner already says when the platform cannot be reached.
      response = null;
    }
    if (response?.status === 403 || response?.status === 401) {
      this.onChange(null);
      return;
    }
    if (response?.ok) this.onChange((await response.json()).problems);
    this.timer = setTimeout(() => this.poll(), POLL_MS);
  }
}
