import { credential, isSignedIn } from "./api.js";

// One WebSocket for every subscription. When it drops, it reconnects with backoff and
// resubscribes each job from the last seq this page saw, so the server replays exactly what
// was missed: no line lost, none twice.

const MIN_DELAY = 500;
const MAX_DELAY = 15_000;

export class Connection {
  /// onMessage(message) gets every server message; onState(state, detail) gets
  /// "connecting" | "live" | "reconnecting" (detail: seconds until the next try).
  constructor({ onMessage, onState }) {
    this.onMessage = onMessage;
    this.onState = onState;
    /// job id → { since, events }: what to resubscribe after a reconnect.
    this.subscriptions = new Map();
    this.delay = MIN_DELAY;
    this.socket = null;
    this.nextRequest = 1;
    /// req → { resolve, reject } of ops awaiting their ack (`request`).
    this.pending = new Map();
  }

  open() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    this.onState("connecting");
    // Browsers cannot set headers on a WebSocket: the credential rides as a subprotocol
    // beside agentgate.v1, which is the one the server echoes.
    const socket = new WebSocket(`${scheme}://${location.host}/ws`, ["agentgate.v1", `agentgate.token.${credential()}`]);
    this.socket = socket;
    socket.onopen = () => {
      this.delay = MIN_DELAY;
      this.onState("live");
      for (const [job, subscription] of this.subscriptions) this.#sendSubscribe(job, subscription);
    };
    socket.onmessage = (event) => {
      let message;
      try { message = JSON.parse(event.data); } catch { return; }
      const waiting = this.pending.get(message.req);
      if (waiting && (message.type === "ack" || message.type === "error")) {
        this.pending.delete(message.req);
        if (message.type === "ack") waiting.resolve(message);
        else waiting.reject(Object.assign(new Error(message.error ?? "refused"), { code: message.code }));
        return;
      }
      const subscription = this.subscriptions.get(message.job);
      // The server takes the subscription before it acks it; from then on the job's events
      // come in order on it (and no more through "*").
      if (subscription && message.type === "ack" && message.req === subscription.req) subscription.acked = true;
      // Before that ack, a lifecycle event of the job came through "*", possibly ahead of
      // what the subscription will replay: it updates the job, but moves no cursor and adds
      // no line (the replay brings it in order).
      if (subscription && !subscription.acked && message.type?.startsWith("job:")) {
        message.beforeSubscribed = true;
        this.onMessage(message);
        return;
      }
      // Seqs the server's store lost: it said so; a resubscribe must not ask for them again.
      if (subscription && message.type === "gap" && typeof message.to === "number") {
        subscription.since = Math.max(subscription.since, message.to);
      }
      // A job:partial is not a stored event: it names the seq it follows, and moves no cursor.
      if (subscription && typeof message.seq === "number" && message.type?.startsWith("job:") && message.type !== "job:partial") {
        if (message.seq <= subscription.since) return;  // never show a line twice
        subscription.since = message.seq;
      }
      this.onMessage(message);
    };
    socket.onclose = async (event) => {
      if (this.socket !== socket) return;
      this.socket = null;
      for (const waiting of this.pending.values()) waiting.reject(new Error("the connection to the server was lost"));
      this.pending.clear();
      // 4401: the server ended this session (signed out elsewhere, expired, token rotated).
      // A refused handshake looks like any other close: ask whether the session is still
      // live before trying again.
      if (this.closed || event.code === 4401 || !(await isSignedIn().catch(() => true))) {
        if (!this.closed) window.dispatchEvent(new Event("agentgate:signed-out"));
        return;
      }
      const wait = this.delay;
      this.delay = Math.min(MAX_DELAY, this.delay * 2);
      this.onState("reconnecting", Math.round(wait / 1000));
      setTimeout(() => this.open(), wait + Math.random() * 250);
    };
  }

  /// Stops for good (signed out).
  close() {
    this.closed = true;
    this.socket?.close();
  }

  /// Follows a job from `since` (0: its whole history). "*" is the job list's lifecycle feed.
  subscribe(job, since = 0) {
    const subscription = { since };
    this.subscriptions.set(job, subscription);
    if (this.socket?.readyState === WebSocket.OPEN) this.#sendSubscribe(job, subscription);
  }

  unsubscribe(job) {
    this.subscriptions.delete(job);
    this.send({ op: "unsubscribe", job });
  }

  /// Sends an op and resolves with its ack; rejects with the server's error (its `code` too).
  request(message) {
    return new Promise((resolve, reject) => {
      if (this.socket?.readyState !== WebSocket.OPEN) return reject(new Error("not connected to the server"));
      const req = this.nextRequest++;
      this.pending.set(req, { resolve, reject });
      this.socket.send(JSON.stringify({ ...message, req }));
    });
  }

  send(message) {
    if (this.socket?.readyState !== WebSocket.OPEN) return false;
    this.socket.send(JSON.stringify({ ...message, req: this.nextRequest++ }));
    return true;
  }

  #sendSubscribe(job, subscription) {
    const message = { op: "subscribe", job };
    // A job's viewers also get its presence: how many watch it and who controls it.
    if (job !== "*") Object.assign(message, { since: subscription.since, presence: true });
    subscription.acked = false;
    subscription.req = this.nextRequest;
    this.send(message);
  }
}
