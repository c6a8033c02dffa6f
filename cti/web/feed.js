// The live feed (/ws, docs/websocket.md): authenticate with the first frame, resume with
// the stream and the largest seq seen, reconnect with backoff when the socket closes or
// goes silent for two heartbeats. Frames go to onFrame once each, in order.

const CLOSE_UNAUTHORIZED = 4401;
const FIRST_DELAY_MS = 500;
const MAX_DELAY_MS = 15000;
const DEFAULT_HEARTBEAT_S = 30;
const AUTH_WAIT_MS = 15000; // the server gives a client 10 s to authenticate
const DATA_FRAMES_WITHOUT_SEQ_CHECK = new Set(["hello", "resync", "heartbeat", "pong"]);

export class Feed {
  constructor({ token, onFrame, onStatus, onUnauthorized }) {
    this.token = token;
    this.onFrame = onFrame;
    this.onStatus = onStatus;
    this.onUnauthorized = onUnauthorized;
    this.stream = null;
    this.lastSeq = 0;
    this.heartbeat = DEFAULT_HEARTBEAT_S;
    this.attempt = 0;
    this.ws = null;
    this.stopped = true;
    this.watchdog = null;
    this.retry = null;
    this.everConnected = false;
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.retry);
    this.drop(1000, "logout");
    this.onStatus("offline");
  }

  url() {
    const url = new URL("/ws", window.location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    if (this.stream) {
      // Not secrets: where to resume. The token only ever travels in a frame.
      url.searchParams.set("stream", this.stream);
      url.searchParams.set("last_seq", String(this.lastSeq));
    }
    return url.href;
  }

  connect() {
    if (this.stopped) return;
    this.onStatus(this.everConnected ? "reconnecting" : "connecting");
    let ws;
    try {
      ws = new WebSocket(this.url());
    } catch {
      this.scheduleReconnect();
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      if (ws !== this.ws) return;
      ws.send(JSON.stringify({ type: "auth", token: this.token }));
      this.arm(AUTH_WAIT_MS);
    };
    ws.onmessage = (message) => {
      if (ws !== this.ws) return;
      this.arm(this.heartbeat * 2000);
      let frame;
      try {
        frame = JSON.parse(message.data);
      } catch {
        return;
      }
      if (frame && typeof frame === "object") this.receive(frame);
    };
    ws.onclose = (event) => {
      if (ws !== this.ws) return;
      this.ws = null;
      clearTimeout(this.watchdog);
      if (this.stopped) return;
      if (event.code === CLOSE_UNAUTHORIZED) {
        this.stopped = true;
        this.onStatus("offline");
        this.onUnauthorized();
        return;
      }
      this.scheduleReconnect();
    };
  }

  receive(frame) {
    const seq = Number.isInteger(frame.seq) ? frame.seq : null;
    switch (frame.type) {
      case "hello":
        this.attempt = 0;
        this.everConnected = true;
        this.stream = typeof frame.stream === "string" ? frame.stream : null;
        if (seq !== null) this.lastSeq = frame.resumed ? Math.max(this.lastSeq, seq) : seq;
        if (Number(frame.heartbeat) > 0) this.heartbeat = Number(frame.heartbeat);
        this.arm(this.heartbeat * 2000);
        this.onStatus("live");
        break;
      case "resync":
        if (seq !== null) this.lastSeq = seq;
        break;
      case "heartbeat":
        if (seq !== null) this.lastSeq = Math.max(this.lastSeq, seq);
        break;
      default:
        if (seq !== null && !DATA_FRAMES_WITHOUT_SEQ_CHECK.has(frame.type)) {
          if (seq <= this.lastSeq) return; // already seen (a replay overlapping live frames)
          this.lastSeq = seq;
        }
    }
    this.onFrame(frame);
  }

  arm(ms) {
    clearTimeout(this.watchdog);
    this.watchdog = setTimeout(() => {
      // Nothing for two heartbeats: the connection is dead even if the socket says not.
      this.drop(4000, "silent");
      this.scheduleReconnect();
    }, ms);
  }

  drop(code, reason) {
    clearTimeout(this.watchdog);
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = null;
      try {
        ws.close(code, reason);
      } catch {
        // already closing
      }
    }
  }

  scheduleReconnect() {
    if (this.stopped) return;
    clearTimeout(this.retry);
    this.onStatus(this.everConnected ? "reconnecting" : "connecting");
    const ceiling = Math.min(MAX_DELAY_MS, FIRST_DELAY_MS * 2 ** this.attempt);
    this.attempt = Math.min(this.attempt + 1, 10);
    const delay = ceiling / 2 + Math.random() * (ceiling / 2);
    this.retry = setTimeout(() => this.connect(), delay);
  }
}
