// The operator desktop. Everything shown from data goes through textContent (h() below);
// nothing from the service or the user is ever parsed as HTML.

import { Feed } from "./feed.js";
import { formatNumber, formatTime, setOfficeRegion, setTimeZone } from "./format.js";
import { DICTIONARIES, language, setLanguage, t, translatePage } from "./i18n.js";
import { createPages } from "./pages.js";
import { smsParts } from "./sms.js";

const SESSION_KEY = "cti.session";
const RECEPTION_ROLES = new Set(["receptionist", "supervisor", "admin"]);
const ENDED_MEMORY = 500; // ended call ids remembered, so a late frame cannot revive a card
const CALLS_LIMIT = 20;
const SMS_LIMIT = 20; // messages in the Messages panel
const SMS_EARLY_MEMORY = 50; // statuses kept for messages the page has not seen yet
const SMS_POLL_MS = 10000; // without an extension no status frames come: look this often
const SMS_NOTIFY_WAIT_MS = 2000; // how long a notification waits for the sender's name
const SMS_PENDING = new Set(["queued", "sending"]);
const SMS_REPORT_WAIT_MS = 10 * 60 * 1000; // a sent SMS's delivery report is looked for this long

const state = {
  session: null, // {token, user}
  me: null, // hello.user (or the session's user until the hello)
  features: { transfer: false, sms: false, dial: true },
  office: null, // the hello's {time_zone, region}
  pops: new Map(), // call_id -> card
  ended: new Set(),
  lines: new Map(), // extension -> state
  names: new Map(), // extension -> display name
  links: new Map(), // name -> {name, kind, up, detail}
  transfers: new Map(), // call_id -> {status, text}
  dials: new Map(), // request_id -> {number}
  earlyOriginates: new Map(), // request_id -> call.originate data that beat the POST answer
  notified: new Set(),
  feedStatus: "offline",
  callsTab: "recent",
  recent: [],
  missedCalls: [],
  callsError: null,
  sms: new Map(), // id -> message (GET /api/sms shape) plus tick: when a frame last set it
  smsEarly: new Map(), // id -> {status, reason, tick}: frames about messages not loaded yet
  smsTick: 0, // counts sms.status frames, so an older snapshot cannot undo a newer frame
  smsFetching: new Set(),
  smsError: null,
  smsResult: null, // the send form's last result: {kind, key, params}
};

let feed = null;
let callsRefresh = null;
let namesRefresh = null;
let dialStatusTimer = null;
let smsPoll = null;

const $ = (id) => document.getElementById(id);

// -- small DOM helpers ---------------------------------------------------------------

function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key === "text") el.textContent = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

function show(el, visible) {
  el.hidden = !visible;
}

function setText(el, text) {
  el.textContent = text;
  show(el, Boolean(text));
}

// Replace el's children, keeping keyboard focus on the element with the same focus key.
function replaceKeepingFocus(container, build) {
  const focused = document.activeElement;
  const key = container.contains(focused) ? focused?.dataset?.focusKey : null;
  build();
  if (key) {
    const again = container.querySelector(`[data-focus-key="${CSS.escape(key)}"]`);
    if (again) again.focus();
  }
}

// -- formatting ----------------------------------------------------------------------

// A number one can call or text (not an extension, not an alphanumeric SMS sender).
function isPhoneNumber(number) {
  return typeof number === "string" && /^\+?\d{5,}$/.test(number);
}

function lineClass(lineState) {
  switch (lineState) {
    case "idle":
    case "free":
      return "idle";
    case "ringing":
      return "ringing";
    case "in_use":
    case "busy":
    case "onhold":
    case "on_hold":
      return "busy";
    case "unavailable":
      return "unavailable";
    default:
      return "unknown";
  }
}

function lineLabel(lineState) {
  return t(
    {
      idle: "lineIdle",
      ringing: "lineRinging",
      busy: "lineBusy",
      unavailable: "lineUnavailable",
      unknown: "lineUnknown",
    }[lineClass(lineState)],
  );
}

function outcomeLabel(call) {
  if (call.in_progress) return t("outcomeInProgress");
  if (!call.outcome) return "";
  const key = `outcome${call.outcome[0].toUpperCase()}${call.outcome.slice(1)}`;
  return DICTIONARIES.en[key] ? t(key) : call.outcome;
}

function directionLabel(direction) {
  return (
    {
      inbound: t("directionInbound"),
      outbound: t("directionOutbound"),
      internal: t("directionInternal"),
    }[direction] || ""
  );
}

function roleLabel(role) {
  const key = `role${String(role)[0].toUpperCase()}${String(role).slice(1)}`;
  return DICTIONARIES.en[key] ? t(key) : role;
}

function safeUrl(url) {
  if (typeof url !== "string") return null;
  try {
    const parsed = new URL(url);
    // e1c: opens the 1C:Enterprise thin client (crm_bridge/onec/links.py).
    return ["https:", "http:", "e1c:"].includes(parsed.protocol) ? parsed.href : null;
  } catch {
    return null;
  }
}

// -- who am I ------------------------------------------------------------------------

function myExtension() {
  return state.me?.extension || null;
}

function isReception() {
  return RECEPTION_ROLES.has(state.me?.role);
}

function canDial() {
  return Boolean(myExtension()) && state.features.dial !== false;
}

// -- the HTTP API --------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message, reason = null) {
    super(message);
    this.status = status;
    this.reason = reason;
  }
}

// The service's error in the page's language: by its stable reason when the page knows
// it (not_a_phone_number, pbx_down, ...), else the service's own words.
function errorMessage(error, status) {
  const key = error?.reason ? `reason_${error.reason}` : null;
  if (key && DICTIONARIES.en[key]) {
    const { details } = error; // {parts, max} for some reasons; a list of fields for others
    const params = details && typeof details === "object" && !Array.isArray(details) ? details : {};
    return t(key, params);
  }
  return error?.message || t("errorGeneric", { status });
}

// `credentials: "same-origin"` only for an answer that sets a cookie the page needs (a
// recording's media grant); everything else sends and keeps no cookies.
async function api(method, path, body, { credentials = "omit" } = {}) {
  const headers = { Accept: "application/json" };
  if (state.session) headers.Authorization = `Bearer ${state.session.token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
      credentials,
    });
  } catch {
    throw new ApiError(0, t("networkError"));
  }
  let data = null;
  const text = await response.text();
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!response.ok) {
    const message = errorMessage(data?.error, response.status);
    if (response.status === 401 && state.session && path !== "/api/session") {
      endSession(t("sessionExpired"));
    }
    throw new ApiError(response.status, message, data?.error?.reason || null);
  }
  return data;
}

// A request whose answer is not JSON (a CSV): the token goes in the
// Authorization header, as for api(); a failure throws the service's message.
async function fetchAuthorized(path, options = {}) {
  const headers = { ...(options.headers || {}) };
  if (state.session) headers.Authorization = `Bearer ${state.session.token}`;
  let response;
  try {
    response = await fetch(path, { ...options, headers, cache: "no-store", credentials: "omit" });
  } catch {
    throw new ApiError(0, t("networkError"));
  }
  if (!response.ok) {
    let error = null;
    try {
      error = (await response.json())?.error || null;
    } catch {
      // not JSON
    }
    if (response.status === 401 && state.session) endSession(t("sessionExpired"));
    throw new ApiError(response.status, errorMessage(error, response.status), error?.reason);
  }
  return response;
}

// -- session -------------------------------------------------------------------------

function loadSession() {
  try {
    const saved = JSON.parse(sessionStorage.getItem(SESSION_KEY) || "null");
    if (saved && typeof saved.token === "string") return saved;
  } catch {
    // unreadable: sign in again
  }
  return null;
}

function saveSession(session) {
  try {
    if (session) sessionStorage.setItem(SESSION_KEY, JSON.stringify(session));
    else sessionStorage.removeItem(SESSION_KEY);
  } catch {
    // storage disabled: the session lasts as long as the page
  }
}

async function onLogin(event) {
  event.preventDefault();
  const username = $("login-username").value.trim();
  const password = $("login-password").value;
  const error = $("login-error");
  if (!username || !password) {
    setText(error, t("loginMissing"));
    return;
  }
  const submit = $("login-submit");
  submit.disabled = true;
  submit.textContent = t("signingIn");
  setText(error, "");
  try {
    const body = await api("POST", "/api/session", { username, password });
    state.session = { token: body.token, user: body.user || null };
    saveSession(state.session);
    $("login-password").value = "";
    startDesk();
  } catch (e) {
    setText(error, e.status === 401 || e.status === 403 ? t("loginFailed") : e.message);
  } finally {
    submit.disabled = false;
    submit.textContent = t("signIn");
  }
}

async function onLogout() {
  const session = state.session;
  if (session) {
    try {
      await api("DELETE", "/api/session");
    } catch {
      // gone already or the service is down: forget it here anyway
    }
  }
  endSession("");
}

function endSession(message) {
  if (feed) feed.stop();
  feed = null;
  state.session = null;
  saveSession(null);
  resetDeskState();
  showLogin(message);
}

function resetDeskState() {
  state.me = null;
  state.pops.clear();
  state.ended.clear();
  state.lines.clear();
  state.names.clear();
  state.links.clear();
  state.transfers.clear();
  state.dials.clear();
  state.earlyOriginates.clear();
  state.notified.clear();
  state.recent = [];
  state.missedCalls = [];
  state.callsError = null;
  state.sms.clear();
  state.smsEarly.clear();
  state.smsFetching.clear();
  state.smsError = null;
  state.smsResult = null;
  clearTimeout(callsRefresh);
  clearTimeout(namesRefresh);
  clearTimeout(smsPoll);
  $("pops").replaceChildren();
  $("lines").replaceChildren();
  $("messages").replaceChildren();
  $("sms-text").value = "";
  $("sms-to").value = "";
  clearDialStatus();
}

function showLogin(message) {
  pages.reset();
  show($("desk-view"), false);
  show($("login-view"), true);
  show($("whoami"), false);
  show($("logout-button"), false);
  show($("feed-status"), false);
  show($("links-status"), false);
  show($("notify-button"), false);
  show($("notify-note"), false);
  setText($("login-error"), message || "");
  $("login-username").focus();
}

function startDesk() {
  state.me = state.session.user || null;
  setTimeZone(state.me?.time_zone);
  show($("login-view"), false);
  show($("logout-button"), true);
  show($("feed-status"), true);
  pages.start();
  renderAll();
  feed = new Feed({
    token: state.session.token,
    onFrame: onFrame,
    onStatus: (status) => {
      state.feedStatus = status;
      renderFeedStatus();
    },
    onUnauthorized: () => endSession(t("sessionExpired")),
  });
  feed.start();
  loadNames();
  refreshCalls();
}

// -- frames from the live feed ---------------------------------------------------------

function onFrame(frame) {
  switch (frame.type) {
    case "hello":
      state.me = frame.user || state.me;
      state.office = frame.office || state.office;
      setOfficeRegion(state.office?.region);
      setTimeZone(state.me?.time_zone || state.office?.time_zone);
      if (frame.features && typeof frame.features === "object") {
        state.features = { ...state.features, ...frame.features };
      }
      pages.hello();
      renderAll();
      refreshCalls();
      break;
    case "resync":
      applyResync(frame.state || {});
      pages.resync();
      break;
    case "task.changed":
      pages.taskChanged(frame.data);
      break;
    case "pop":
      if (frame.data) applyPop(frame.data);
      if (frame.data?.state === "ended") scheduleCallsRefresh(frame.data.call_id);
      break;
    case "lines":
      for (const [ext, lineState] of Object.entries(frame.data || {})) {
        state.lines.set(ext, lineState);
        if (!state.names.has(ext)) scheduleNames();
      }
      renderLines();
      renderPops();
      break;
    case "link.state":
      if (frame.data?.name) state.links.set(frame.data.name, frame.data);
      renderLinks();
      break;
    case "call.originate":
      if (frame.data) onOriginate(frame.data);
      break;
    case "sms.received":
      if (frame.data) onSmsReceived(frame.data);
      break;
    case "sms.status":
      if (frame.data) onSmsStatus(frame.data);
      break;
    case "fax.received":
      if (frame.data) onFaxReceived(frame.data);
      break;
    case "fax.status":
      pages.faxChanged(frame.data);
      break;
    default:
      break; // heartbeat, pong, and events only integrations use
  }
}

// A fax for me arrived: the desk says so; the faxes page follows.
function onFaxReceived(data) {
  pages.faxChanged(data);
  if (data.status !== "received") return;
  const from = data.client_name || (data.number ? formatNumber(data.number) : data.remote_station || "—");
  showDialStatus(t("faxArrived", { from, pages: data.pages ?? "?" }), "ok");
}

function applyResync(snapshot) {
  state.pops.clear();
  for (const card of snapshot.pops || []) {
    if (!card?.call_id) continue;
    state.ended.delete(card.call_id); // the service says it is live: believe it
    if (card.state !== "ended") state.pops.set(card.call_id, card);
  }
  state.lines = new Map(Object.entries(snapshot.lines || {}));
  state.links = new Map((snapshot.links || []).map((link) => [link.name, link]));
  for (const callId of state.transfers.keys()) {
    if (!state.pops.has(callId)) state.transfers.delete(callId);
  }
  loadNames();
  renderAll();
  loadSms(); // frames may have been missed: the list comes again
}

function applyPop(card) {
  const callId = card.call_id;
  if (!callId) return;
  if (card.state === "ended") {
    state.pops.delete(callId);
    state.transfers.delete(callId);
    state.ended.add(callId);
    if (state.ended.size > ENDED_MEMORY) state.ended.delete(state.ended.values().next().value);
  } else if (!state.ended.has(callId)) {
    state.pops.set(callId, card);
  }
  renderPops();
  const visible = state.pops.has(callId) && cardVisible(state.pops.get(callId));
  const incoming = card.state === "ringing" && card.direction !== "outbound";
  if (visible && incoming && !state.notified.has(callId)) {
    state.notified.add(callId);
    announce(card);
  }
}

function cardVisible(card) {
  if (card.state === "ended") return false;
  if (isReception()) return true;
  // An operator's pop closes when someone else picks the call up.
  const mine = myExtension();
  return !(card.answered_by && card.answered_by !== mine);
}

function announce(card) {
  const who = card.client?.name || card.caller_name || "";
  const number = formatNumber(card.number) || t("hiddenNumber");
  $("announcer").textContent = `${t("notifyTitle")}: ${number} ${who}`.trim();
  notify(t("notifyTitle"), who ? `${number} · ${who}` : number, `cti-call-${card.call_id}`);
}

// A browser notification, only while the page is not being looked at.
function notify(title, body, tag) {
  if (!document.hidden || !("Notification" in window)) return;
  if (Notification.permission !== "granted") return;
  try {
    const notification = new Notification(title, { body, tag });
    notification.onclick = () => {
      window.focus();
      notification.close();
    };
  } catch {
    // some browsers only allow notifications from a service worker
  }
}

// -- click-to-dial -------------------------------------------------------------------

async function dial(number) {
  if (!canDial()) {
    showDialStatus(t("dialNotAllowed"), "error");
    return;
  }
  const label = formatNumber(number);
  showDialStatus(t("calling", { number: label }), "pending");
  try {
    const accepted = await api("POST", "/api/calls", { number });
    state.dials.set(accepted.request_id, { number: label });
    const early = state.earlyOriginates.get(accepted.request_id);
    if (early) {
      state.earlyOriginates.delete(accepted.request_id);
      onOriginate(early);
    }
  } catch (e) {
    showDialStatus(t("dialFailed", { number: label, reason: e.message }), "error");
  }
}

function onOriginate(data) {
  const request = state.dials.get(data.request_id);
  if (!request) {
    // The event can come before the POST's answer; keep it a moment for that answer.
    if (data.request_id && data.extension === myExtension()) {
      state.earlyOriginates.set(data.request_id, data);
      if (state.earlyOriginates.size > 20) {
        state.earlyOriginates.delete(state.earlyOriginates.keys().next().value);
      }
    }
    return;
  }
  state.dials.delete(data.request_id);
  if (data.success) {
    showDialStatus(t("dialConnected", { number: request.number }), "ok");
  } else {
    // The service's code in the page's language ("you did not answer"), else its words.
    const key = data.code ? `dial_${data.code}` : null;
    const reason = (key && DICTIONARIES.en[key] ? t(key) : data.reason) || t("errorGeneric", { status: "—" });
    showDialStatus(t("dialFailed", { number: request.number, reason }), "error");
  }
}

function showDialStatus(text, kind) {
  const banner = $("dial-banner");
  banner.dataset.kind = $("dial-status").dataset.kind = kind;
  $("dial-status").textContent = text;
  show(banner, Boolean(text));
  clearTimeout(dialStatusTimer);
  // A result stays a while; "calling…" until the result, or until the phone gave up.
  dialStatusTimer = setTimeout(clearDialStatus, kind === "pending" ? 60000 : 20000);
}

// Gone when dismissed, after a while, or when the user goes to another page.
function clearDialStatus() {
  clearTimeout(dialStatusTimer);
  $("dial-status").textContent = "";
  show($("dial-banner"), false);
}

function phoneButton(number, label, focusKey) {
  const shown = label || formatNumber(number);
  if (!number || !canDial()) return h("span", { class: "phone-text" }, shown);
  return h(
    "button",
    {
      type: "button",
      class: "phone",
      dataset: { number, focusKey: focusKey || `dial-${number}` },
      "aria-label": t("callNumber", { number: shown }),
      title: t("callNumber", { number: shown }),
    },
    shown,
  );
}

// -- transfer ------------------------------------------------------------------------

async function transfer(callId, extension) {
  state.transfers.set(callId, { status: "pending", text: t("transferring") });
  renderPops();
  try {
    await api("POST", `/api/calls/${encodeURIComponent(callId)}/transfer`, { extension });
    state.transfers.set(callId, { status: "ok", text: t("transferred", { ext: extension }) });
  } catch (e) {
    state.transfers.set(callId, {
      status: "error",
      text: t("transferFailed", { message: e.message }),
    });
  }
  if (state.pops.has(callId)) renderPops();
}

// -- lines and names -----------------------------------------------------------------

async function loadNames() {
  if (!state.session) return;
  try {
    const body = await api("GET", "/api/lines");
    for (const line of body?.lines || []) {
      if (line.user) state.names.set(line.extension, line.user);
      if (!state.lines.has(line.extension)) state.lines.set(line.extension, line.state);
    }
    renderLines();
    renderPops();
    pages.namesChanged();
  } catch {
    // the panel shows extensions without names until the next try
  }
}

function scheduleNames() {
  clearTimeout(namesRefresh);
  namesRefresh = setTimeout(loadNames, 250);
}

// -- the call log --------------------------------------------------------------------

async function refreshCalls(waitingFor = null, triesLeft = 0) {
  const ext = myExtension();
  if (!state.session || !ext || isReception()) return;
  const base = `/api/calls?extension=${encodeURIComponent(ext)}&limit=${CALLS_LIMIT}`;
  try {
    const [recent, missed] = await Promise.all([
      api("GET", base),
      api("GET", `${base}&missed=true`),
    ]);
    state.recent = recent?.calls || [];
    state.missedCalls = missed?.calls || [];
    state.callsError = null;
  } catch (e) {
    state.callsError = e.message;
  }
  renderCalls();
  if (waitingFor && triesLeft > 0 && !state.recent.some((call) => call.id === waitingFor)) {
    // The log is written in batches: look again in a moment.
    clearTimeout(callsRefresh);
    callsRefresh = setTimeout(() => refreshCalls(waitingFor, triesLeft - 1), 1500);
  }
}

function scheduleCallsRefresh(callId) {
  clearTimeout(callsRefresh);
  callsRefresh = setTimeout(() => refreshCalls(callId || null, 4), 500);
}

// -- SMS -----------------------------------------------------------------------------
// The Messages panel holds the newest SMS the user may see (GET /api/sms), merged with
// the live feed: sms.received adds a message at once, sms.status moves an outgoing one
// along (queued -> sending -> sent -> delivered, or failed). A snapshot from the API
// never undoes a status frame that arrived after it was asked for (the ticks).

function smsTime(message) {
  return Date.parse(message.created_at) || 0;
}

function sortedSms() {
  return [...state.sms.values()].sort(
    (a, b) => smsTime(b) - smsTime(a) || String(b.id).localeCompare(String(a.id)),
  );
}

function trimSms() {
  if (state.sms.size <= SMS_LIMIT) return;
  state.sms = new Map(sortedSms().slice(0, SMS_LIMIT).map((message) => [message.id, message]));
}

// Take a message from the API; `since` is the tick when it was asked for.
function mergeSms(message, since) {
  if (!message?.id) return;
  const known = state.sms.get(message.id);
  const merged = { ...known, ...message, tick: known?.tick ?? 0 };
  if (known && known.tick > since) {
    merged.status = known.status;
    merged.reason = known.reason;
  }
  const early = state.smsEarly.get(message.id);
  if (early) {
    state.smsEarly.delete(message.id);
    if (early.tick > since && early.tick > merged.tick) {
      Object.assign(merged, { status: early.status, reason: early.reason, tick: early.tick });
    }
  }
  state.sms.set(message.id, merged);
}

async function loadSms() {
  const session = state.session;
  if (!session) return;
  const since = state.smsTick;
  try {
    const body = await api("GET", `/api/sms?limit=${SMS_LIMIT}`);
    if (state.session !== session) return;
    for (const message of body?.messages || []) mergeSms(message, since);
    trimSms();
    state.smsError = null;
  } catch (e) {
    if (state.session !== session) return;
    state.smsError = e.message;
  }
  renderMessages();
  scheduleSmsPoll();
}

async function fetchSms(id) {
  const session = state.session;
  if (!session || state.smsFetching.has(id)) return;
  state.smsFetching.add(id);
  const since = state.smsTick;
  try {
    const message = await api("GET", `/api/sms/${encodeURIComponent(id)}`);
    if (state.session !== session) return;
    mergeSms(message, since);
    trimSms();
    renderMessages();
  } catch {
    // not (yet) visible to this user: the frame's data stays what is shown
  } finally {
    state.smsFetching.delete(id);
  }
}

function onSmsStatus(data) {
  const id = data.sms_id;
  if (!id || !data.status) return;
  state.smsTick += 1;
  const update = { status: data.status, reason: data.reason ?? null, tick: state.smsTick };
  const message = state.sms.get(id);
  if (!message) {
    // Sent from another window, or the frame beat the answer to our POST.
    state.smsEarly.set(id, update);
    if (state.smsEarly.size > SMS_EARLY_MEMORY) {
      state.smsEarly.delete(state.smsEarly.keys().next().value);
    }
    fetchSms(id);
    return;
  }
  Object.assign(message, update);
  if (data.status === "sent" && !message.sent_at) message.sent_at = data.at || null;
  if (data.status === "delivered" && !message.delivered_at) message.delivered_at = data.at || null;
  renderMessages();
  scheduleSmsPoll();
}

async function onSmsReceived(data) {
  const id = data.sms_id;
  if (!id) return;
  if (!state.sms.has(id)) {
    state.sms.set(id, {
      id,
      direction: "in",
      modem: data.modem || null,
      number: data.sender || "",
      text: data.text ?? "",
      status: "received",
      reason: null,
      parts: null,
      client: null,
      created_at: data.at || new Date().toISOString(),
      tick: 0,
    });
    trimSms();
  }
  renderMessages();
  if (state.notified.has(`sms-${id}`)) return;
  state.notified.add(`sms-${id}`);
  // The frame has the number; the API knows the client's name. Wait a moment for it.
  await Promise.race([fetchSms(id), new Promise((resolve) => setTimeout(resolve, SMS_NOTIFY_WAIT_MS))]);
  const message = state.sms.get(id);
  if (!message || !state.session) return;
  announceSms(message);
}

function announceSms(message) {
  const number = formatNumber(message.number);
  const who = message.client?.name || "";
  const from = who ? `${number} · ${who}` : number;
  const full = String(message.text ?? "");
  const text = full.length > 120 ? `${full.slice(0, 119)}…` : full;
  $("announcer").textContent = `${t("smsNotifyTitle")}: ${from}: ${text}`;
  notify(t("smsNotifyTitle"), `${from}\n${text}`, `cti-sms-${message.id}`);
}

// Users without an extension get no status frames: look again while something is on
// its way.
function scheduleSmsPoll() {
  clearTimeout(smsPoll);
  if (!state.session || myExtension() || isReception()) return;
  const now = Date.now();
  const waiting = [...state.sms.values()].some(
    (message) =>
      message.direction === "out" &&
      (SMS_PENDING.has(message.status) ||
        (message.status === "sent" && now - (Date.parse(message.sent_at) || now) < SMS_REPORT_WAIT_MS)),
  );
  if (waiting) smsPoll = setTimeout(loadSms, SMS_POLL_MS);
}

function canSms() {
  return state.features.sms === true;
}

function smsButton(number, focusKey) {
  if (!canSms() || !isPhoneNumber(number)) return null;
  const label = t("smsToNumber", { number: formatNumber(number) });
  return h(
    "button",
    {
      type: "button",
      class: "btn btn-small sms-button",
      dataset: { smsNumber: number, focusKey },
      "aria-label": label,
      title: label,
    },
    t("smsShort"),
  );
}

function startSmsTo(number) {
  if (!canSms() || $("sms-panel").hidden) return;
  $("sms-to").value = formatNumber(number);
  const text = $("sms-text");
  text.scrollIntoView({ block: "nearest" });
  text.focus();
  renderSmsCounter();
}

function encodingLabel(encoding) {
  return { gsm7: t("smsEncodingGsm7"), ucs2: t("smsEncodingUcs2") }[encoding] || encoding || "";
}

function smsStatusLabel(status) {
  const key = `smsStatus${String(status)[0]?.toUpperCase()}${String(status).slice(1)}`;
  return DICTIONARIES.en[key] ? t(key) : String(status || "");
}

// -- rendering -----------------------------------------------------------------------

function renderAll() {
  translatePage();
  renderLanguageToggle();
  renderWhoami();
  renderFeedStatus();
  renderLinks();
  renderNotifyControls();
  renderPanels();
  renderPops();
  renderLines();
  renderCalls();
  renderMessages();
  renderSmsCounter();
  renderSmsResult();
  pages.render();
}

function renderLanguageToggle() {
  const other = language() === "ru" ? "en" : "ru";
  const button = $("lang-toggle");
  const name = DICTIONARIES[other].languageName;
  button.textContent = name;
  button.lang = other;
  button.dataset.lang = other;
  button.setAttribute("aria-label", t("switchLanguage", { name }));
}

function renderWhoami() {
  const me = state.me;
  show($("whoami"), Boolean(me));
  if (!me) return;
  $("user-name").textContent = me.display_name || me.username || "";
  const meta = [roleLabel(me.role)];
  if (me.extension) meta.push(t("extensionShort", { ext: me.extension }));
  $("user-meta").textContent = meta.join(" · ");
}

function renderFeedStatus() {
  const el = $("feed-status");
  el.dataset.state = state.feedStatus;
  el.textContent = t(
    {
      live: "feedLive",
      connecting: "feedConnecting",
      reconnecting: "feedReconnecting",
      offline: "feedOffline",
    }[state.feedStatus] || "feedOffline",
  );
}

function renderLinks() {
  const down = [...state.links.values()].filter((link) => link.up === false);
  const el = $("links-status");
  const texts = down.map((link) =>
    t("linkDown", {
      kind: link.kind === "modem" ? t("linkKindModem") : t("linkKindPbx"),
      name: link.name,
    }),
  );
  setText(el, state.session ? texts.join("; ") : "");
}

function renderNotifyControls() {
  const button = $("notify-button");
  const note = $("notify-note");
  if (!state.session || !("Notification" in window)) {
    show(button, false);
    show(note, false);
    return;
  }
  show(button, Notification.permission === "default");
  setText(note, Notification.permission === "denied" ? t("notificationsBlocked") : "");
}

function renderPanels() {
  const reception = isReception();
  $("pops-title").textContent = reception ? t("callsInProgress") : t("incomingCalls");
  $("desk-view").dataset.view = reception ? "reception" : "operator";
  show($("dial-panel"), canDial());
  show($("calls-panel"), !reception && Boolean(myExtension()));
  const sms = canSms();
  show($("sms-panel"), !reception || sms); // receptionists do not send; supervisors may
  $("sms-fieldset").disabled = !sms;
  show($("sms-disabled-note"), !sms);
}

function sortedCards() {
  const rank = { ringing: 0, answered: 1 };
  return [...state.pops.values()]
    .filter(cardVisible)
    .sort(
      (a, b) =>
        (rank[a.state] ?? 2) - (rank[b.state] ?? 2) ||
        String(a.started_at).localeCompare(String(b.started_at)),
    );
}

function renderPops() {
  const container = $("pops");
  const cards = sortedCards();
  replaceKeepingFocus(container, () => {
    container.replaceChildren(...cards.map(renderCard));
  });
  show($("pops-empty"), cards.length === 0);
}

function cardStatus(card) {
  if (card.state === "answered") {
    if (card.answered_by && card.answered_by === myExtension()) return t("answeredByYou");
    return t("answeredBy", { ext: card.answered_by || "?" });
  }
  if (card.state === "ended") return t("stateEnded");
  const ringing = (card.ringing || []).join(", ");
  return ringing ? t("ringingAt", { exts: ringing }) : t("stateRinging");
}

function renderCard(card) {
  const number = formatNumber(card.number);
  const answeredName = card.answered_by ? state.names.get(card.answered_by) : null;
  const head = h(
    "header",
    { class: "card-head" },
    h(
      "span",
      { class: `badge badge-${card.state}` },
      cardStatus(card),
    ),
    answeredName && card.answered_by !== myExtension()
      ? h("span", { class: "answered-name" }, answeredName)
      : null,
    h("span", { class: "direction" }, directionLabel(card.direction)),
    h("time", { datetime: card.started_at || null }, formatTime(card.started_at)),
  );
  const caller = h(
    "div",
    { class: "caller" },
    card.number
      ? phoneButton(card.number, number, `card-${card.call_id}-number`)
      : h("span", { class: "phone-text" }, t("hiddenNumber")),
    card.number ? smsButton(card.number, `card-${card.call_id}-sms`) : null,
    callerIdName(card.caller_name, card.lookup === "found" || card.lookup === "pending"),
  );
  const article = h(
    "article",
    {
      class: `card card-${card.state}`,
      dataset: { callId: card.call_id, state: card.state },
      "aria-label": `${cardStatus(card)}: ${number || t("hiddenNumber")}`,
    },
    head,
    caller,
    renderWho(card),
    renderHistory(card),
    renderTasks(card),
    isReception() ? renderTransfer(card) : null,
  );
  return article;
}

// The name the phone network sent (caller ID): what the directory does not know, said to
// be only that. Where the directory knows the client, its client and contact stand
// alone; the network's name could be anyone's (a switchboard, a previous owner).
function callerIdName(name, directoryKnows) {
  if (!name || directoryKnows) return null;
  return h("span", { class: "caller-name", title: t("callerName") }, t("callerIdIs", { name }));
}

function renderWho(card) {
  const rows = [];
  if (card.lookup === "pending" && !card.client) {
    return h("p", { class: "lookup lookup-pending" }, t("lookupPending"));
  }
  if (card.lookup === "shared") {
    const names = (card.shared_by || []).map((client) => client.name).join(", ");
    return h("p", { class: "lookup lookup-shared" }, t("lookupShared", { names }));
  }
  if (!card.client) {
    const key = card.lookup === "unavailable" ? "lookupUnavailable" : "lookupUnknown";
    return h("p", { class: `lookup lookup-${card.lookup}` }, t(key));
  }
  const client = card.client;
  const crm = safeUrl(client.crm_url);
  const kind = client.kind === "person" ? t("kindPerson") : client.kind ? t("kindCompany") : "";
  rows.push(
    h("dt", {}, t("client")),
    h(
      "dd",
      { class: "client" },
      h("span", { class: "client-name" }, client.name || ""),
      kind ? h("span", { class: "muted" }, ` · ${kind}`) : null,
      (client.tags || []).map((tag) => h("span", { class: "tag" }, tag)),
      crm
        ? h(
            "a",
            { class: "crm-link", href: crm, target: "_blank", rel: "noopener noreferrer" },
            t("openInCrm"),
          )
        : null,
    ),
  );
  if (card.contact) rows.push(h("dt", {}, t("contact")), h("dd", { class: "contact" }, card.contact));
  rows.push(h("dt", {}, t("manager")), h("dd", { class: "manager" }, renderManager(card)));
  return h("dl", { class: "who" }, rows);
}

function renderManager(card) {
  const manager = card.manager;
  if (!manager) return h("span", { class: "muted" }, t("noManager"));
  const ext = manager.extension;
  const lineState = (ext && state.lines.get(ext)) || manager.line_state || null;
  return [
    h("span", { class: "manager-name" }, manager.name || ext || ""),
    ext
      ? h(
          "span",
          { class: "manager-ext" },
          " (",
          ext === myExtension() ? ext : phoneButton(ext, ext, `card-${card.call_id}-manager`),
          ")",
        )
      : null,
    ext ? " " : null,
    ext
      ? h(
          "span",
          { class: `line-state ls-${lineClass(lineState)}`, dataset: { line: lineState || "" } },
          lineLabel(lineState),
        )
      : null,
  ];
}

function renderHistory(card) {
  const items = (card.history || []).slice(0, 5);
  if (!card.client && items.length === 0) return null;
  return h(
    "section",
    { class: "card-section history" },
    h("h3", {}, t("history")),
    items.length === 0
      ? h("p", { class: "muted" }, t("noHistory"))
      : h(
          "ol",
          {},
          items.map((item) => {
            const kind =
              { call: t("historyCall"), sms: t("historySms"), fax: t("historyFax") }[item.kind] ||
              item.kind;
            const parts = [directionLabel(item.direction), outcomeLabel({ outcome: item.outcome })];
            if (item.answered_by) parts.push(item.answered_by);
            return h(
              "li",
              {},
              h("time", { datetime: item.at || null }, formatTime(item.at)),
              ` ${kind}`,
              h("span", { class: "muted" }, ` ${parts.filter(Boolean).join(" · ")}`),
            );
          }),
        ),
  );
}

function renderTasks(card) {
  const tasks = card.tasks || [];
  if (tasks.length === 0) return null;
  return h(
    "section",
    { class: "card-section tasks" },
    h("h3", {}, t("tasks")),
    h(
      "ul",
      {},
      tasks.map((task) =>
        h(
          "li",
          {},
          phoneButton(task.number, null, `card-${card.call_id}-task-${task.id}`),
          h("span", { class: "muted" }, ` ${t("taskLine", { count: task.missed_calls ?? 1 })}`),
          task.assignee_extension
            ? h("span", { class: "muted" }, ` · ${t("taskAssignee", { ext: task.assignee_extension })}`)
            : null,
          task.created_at ? h("span", { class: "muted" }, ` · ${formatTime(task.created_at)}`) : null,
        ),
      ),
    ),
  );
}

function renderTransfer(card) {
  const manager = card.manager;
  const status = state.transfers.get(card.call_id);
  const result = status
    ? h("p", { class: `transfer-result result-${status.status}`, role: "status" }, status.text)
    : null;
  if (!manager?.extension) {
    return result ? h("div", { class: "card-actions" }, result) : null;
  }
  const allowed = state.features.transfer !== false;
  const done = status?.status === "pending" || status?.status === "ok";
  const lineOf = (ext) => lineClass(state.lines.get(ext) || (ext === manager.extension ? manager.line_state : null));
  const managerLine = lineOf(manager.extension);
  const button = (ext, name, primary, key) =>
    h(
      "button",
      {
        type: "button",
        class: `btn ${primary ? "btn-primary" : ""} transfer`,
        dataset: { transferCall: card.call_id, transferExt: ext, focusKey: `transfer-${card.call_id}-${ext}` },
        disabled: !allowed || done || card.answered_by === ext,
        title: allowed ? null : t("transferUnavailable"),
      },
      t(key, { name, ext }),
    );
  // The manager is offered even when busy (the caller may wait), said so; and the next
  // free colleague beside.
  const busy = managerLine === "busy"; // ringing (for this call, say) is not busy
  const free = busy ? nextFreeColleague(card, manager.extension) : null;
  return h(
    "div",
    { class: "card-actions" },
    button(manager.extension, manager.name || manager.extension, !busy, busy ? "transferToBusy" : "transferTo"),
    free ? button(free, state.names.get(free) || free, true, "transferToFree") : null,
    allowed ? null : h("span", { class: "note" }, t("transferUnavailable")),
    result,
  );
}

// An operator whose line is idle now, other than the manager and whoever has the call.
function nextFreeColleague(card, managerExt) {
  const taken = new Set([managerExt, card.answered_by, ...(card.ringing || [])]);
  return (
    [...state.names.keys()]
      .filter((ext) => !taken.has(ext) && lineClass(state.lines.get(ext)) === "idle")
      .sort((a, b) => Number(a) - Number(b) || a.localeCompare(b))[0] || null
  );
}

function renderLines() {
  const list = $("lines");
  const extensions = [...new Set([...state.lines.keys(), ...state.names.keys()])].sort(
    (a, b) => Number(a) - Number(b) || a.localeCompare(b),
  );
  const mine = myExtension();
  replaceKeepingFocus(list, () => {
    list.replaceChildren(
      ...extensions.map((ext) => {
        const lineState = state.lines.get(ext);
        const name = state.names.get(ext);
        return h(
          "li",
          { class: `line ls-${lineClass(lineState)}`, dataset: { extension: ext, line: lineState || "" } },
          h("span", { class: "dot", "aria-hidden": "true" }),
          h("span", { class: "line-name" }, name || ext, ext === mine ? ` (${t("you")})` : ""),
          ext === mine ? h("span", { class: "line-ext" }, ext) : phoneButton(ext, ext, `line-${ext}`),
          h("span", { class: "line-state-text" }, lineLabel(lineState)),
        );
      }),
    );
  });
  show($("lines-empty"), extensions.length === 0);
}

function renderCallList(container, calls) {
  const list = container.querySelector(".call-list");
  const mine = myExtension();
  replaceKeepingFocus(list, () => {
    list.replaceChildren(
      ...calls.map((call) => {
        let other = call.external_number;
        let otherLabel = formatNumber(other);
        if (!other) {
          const legs = (call.legs || []).map((leg) => leg.extension).filter((e) => e !== mine);
          other = call.caller_extension && call.caller_extension !== mine ? call.caller_extension : legs[0];
          otherLabel = other || "";
        }
        const outcome = outcomeLabel(call);
        return h(
          "li",
          { class: `call-row${call.missed ? " call-missed" : ""}`, dataset: { callId: call.id } },
          h("time", { datetime: call.started_at || null }, formatTime(call.started_at)),
          h("span", { class: `dir dir-${call.direction}` }, directionLabel(call.direction)),
          other ? phoneButton(other, otherLabel, `${container.id}-${call.id}`) : h("span", {}, "—"),
          call.external_number ? smsButton(call.external_number, `${container.id}-${call.id}-sms`) : null,
          call.client
            ? h("span", { class: "call-name call-client" }, call.client.name)
            : callerIdName(call.external_name, false),
          h("span", { class: "call-outcome" }, callOutcomeText(call, outcome)),
        );
      }),
    );
  });
  show(container.querySelector(".empty"), calls.length === 0);
}

// The outcome as the lists show it: missed, and a fax (with its pages) where it was one.
function callOutcomeText(call, outcome) {
  const parts = [outcome];
  if (call.missed) parts.push(t("missed"));
  if (call.fax) parts.unshift(t("faxPages", { pages: call.fax.pages ?? 0 }));
  return parts.filter(Boolean).join(" · ");
}

function renderCalls() {
  const panel = $("calls-panel");
  if (panel.hidden) return;
  renderCallList($("recent-calls"), state.recent);
  renderCallList($("missed-calls"), state.missedCalls);
  const count = $("missed-count");
  setText(count, state.missedCalls.length ? String(state.missedCalls.length) : "");
  const recentTab = state.callsTab === "recent";
  $("tab-recent").setAttribute("aria-selected", String(recentTab));
  $("tab-missed").setAttribute("aria-selected", String(!recentTab));
  $("tab-recent").tabIndex = recentTab ? 0 : -1;
  $("tab-missed").tabIndex = recentTab ? -1 : 0;
  show($("recent-calls"), recentTab);
  show($("missed-calls"), !recentTab);
  if (state.callsError) {
    const active = recentTab ? $("recent-calls") : $("missed-calls");
    setText(active.querySelector(".empty"), t("callsLoadFailed", { message: state.callsError }));
  }
}

function messagesVisible() {
  if (!state.session) return false;
  const modem = [...state.links.values()].some((link) => link.kind === "modem");
  return canSms() || modem || state.sms.size > 0;
}

function renderMessages() {
  const panel = $("messages-panel");
  show(panel, messagesVisible());
  if (panel.hidden) return;
  const list = $("messages");
  const messages = sortedSms();
  replaceKeepingFocus(list, () => {
    list.replaceChildren(...messages.map(renderSmsRow));
  });
  const empty = $("messages-empty");
  if (state.smsError) setText(empty, t("smsLoadFailed", { message: state.smsError }));
  else setText(empty, messages.length === 0 ? t("noMessages") : "");
}

function renderSmsRow(message) {
  const incoming = message.direction === "in";
  const number = message.number || "";
  const shown = formatNumber(number);
  const status = message.status || "";
  return h(
    "li",
    {
      class: `sms-row sms-${incoming ? "in" : "out"}`,
      dataset: { smsId: message.id, direction: incoming ? "in" : "out", status },
    },
    h(
      "div",
      { class: "sms-head" },
      h("time", { datetime: message.created_at || null }, formatTime(message.created_at)),
      h("span", { class: "dir sms-dir" }, incoming ? t("smsIncoming") : t("smsOutgoing")),
      isPhoneNumber(number)
        ? phoneButton(number, shown, `sms-${message.id}-number`)
        : h("span", { class: "phone-text" }, shown),
      smsButton(number, `sms-${message.id}-sms`),
      message.client?.name ? h("span", { class: "sms-client" }, message.client.name) : null,
      message.parts > 1
        ? h("span", { class: "muted sms-parts" }, t("smsPartsShort", { parts: message.parts }))
        : null,
      incoming
        ? null
        : h("span", { class: `sms-status sms-status-${status}`, dataset: { status } }, smsStatusLabel(status)),
    ),
    h("p", { class: "sms-text", dir: "auto" }, message.text ?? ""),
    message.reason ? h("p", { class: "sms-reason" }, message.reason) : null,
  );
}

function renderSmsCounter() {
  const el = $("sms-counter");
  const count = smsParts($("sms-text").value);
  el.dataset.parts = String(count.parts);
  el.dataset.encoding = count.encoding;
  el.textContent = t("smsCounter", {
    chars: count.chars,
    parts: count.parts,
    encoding: encodingLabel(count.encoding),
    left: count.left,
  });
}

function renderSmsResult() {
  const el = $("sms-result");
  const result = state.smsResult;
  if (!result) {
    setText(el, "");
    return;
  }
  const params = { ...result.params };
  if (params.encoding) params.encoding = encodingLabel(params.encoding);
  el.dataset.kind = result.kind;
  setText(el, t(result.key, params));
}

// -- forms and controls --------------------------------------------------------------

function selectTab(tab, focus) {
  state.callsTab = tab;
  translatePage($("calls-panel"));
  renderCalls();
  if (focus) $(tab === "recent" ? "tab-recent" : "tab-missed").focus();
}

async function onSms(event) {
  event.preventDefault();
  if (!canSms()) return;
  const to = $("sms-to").value.trim();
  const text = $("sms-text").value;
  if (!to || !text.trim()) {
    state.smsResult = { kind: "error", key: "smsMissing" };
    renderSmsResult();
    (to ? $("sms-text") : $("sms-to")).focus();
    return;
  }
  const session = state.session;
  const submit = $("sms-submit");
  submit.disabled = true;
  state.smsResult = { kind: "pending", key: "smsSending" };
  renderSmsResult();
  try {
    const queued = await api("POST", "/api/sms", { to, text });
    if (state.session !== session) return;
    addQueuedSms(queued, text);
    if ($("sms-text").value === text) $("sms-text").value = "";
    state.smsResult = {
      kind: "ok",
      key: "smsQueued",
      params: { parts: queued.parts, encoding: queued.encoding },
    };
    renderMessages();
    renderSmsCounter();
    fetchSms(queued.id); // the client's name, when the number is a client's
    scheduleSmsPoll();
  } catch (e) {
    state.smsResult = { kind: "error", key: "smsFailed", params: { message: e.message } };
  } finally {
    submit.disabled = false;
    renderSmsResult();
  }
}

// The answer to POST /api/sms: the message is in the list as queued from now on (unless
// its status frames came first).
function addQueuedSms(queued, text) {
  const known = state.sms.get(queued.id);
  if (known) {
    Object.assign(known, { parts: queued.parts, encoding: queued.encoding });
    return;
  }
  const early = state.smsEarly.get(queued.id);
  state.smsEarly.delete(queued.id);
  state.sms.set(queued.id, {
    id: queued.id,
    direction: "out",
    modem: null,
    number: queued.to,
    text,
    status: early?.status || queued.status || "queued",
    reason: early?.reason ?? null,
    parts: queued.parts,
    encoding: queued.encoding,
    client: null,
    created_at: new Date().toISOString(),
    tick: early?.tick || 0,
  });
  trimSms();
}

async function onNotifyClick() {
  if (!("Notification" in window)) return;
  try {
    await Notification.requestPermission();
  } finally {
    renderNotifyControls();
  }
}

function onLanguage() {
  setLanguage(language() === "ru" ? "en" : "ru");
  renderAll();
}

function onDocumentClick(event) {
  const target = event.target instanceof Element ? event.target : null;
  const phone = target?.closest("button.phone[data-number]");
  if (phone) {
    dial(phone.dataset.number);
    return;
  }
  const text = target?.closest("button[data-sms-number]");
  if (text) {
    startSmsTo(text.dataset.smsNumber);
    return;
  }
  const move = target?.closest("button[data-transfer-call]");
  if (move && !move.disabled) transfer(move.dataset.transferCall, move.dataset.transferExt);
}

function onTabKey(event) {
  if (event.key !== "ArrowLeft" && event.key !== "ArrowRight") return;
  event.preventDefault();
  selectTab(state.callsTab === "recent" ? "missed" : "recent", true);
}

const pages = createPages({
  api,
  fetchAuthorized,
  h,
  show,
  setText,
  replaceKeepingFocus,
  formatNumber,
  phoneButton,
  directionLabel,
  outcomeLabel,
  dial,
  canDial,
  isReception,
  myExtension,
  me: () => state.me,
  office: () => state.office,
  setMe(me) {
    state.me = { ...state.me, ...me };
    if (state.session) {
      state.session.user = state.me;
      saveSession(state.session);
    }
    setTimeZone(state.me.time_zone || state.office?.time_zone);
    renderAll();
  },
  leaving: clearDialStatus,
  roleLabel,
  signedIn: () => Boolean(state.session),
  names: () => state.names,
  lineExtensions: () => [...state.lines.keys()],
});

async function boot() {
  translatePage();
  renderLanguageToggle();
  $("login-form").addEventListener("submit", onLogin);
  $("logout-button").addEventListener("click", onLogout);
  $("lang-toggle").addEventListener("click", onLanguage);
  $("notify-button").addEventListener("click", onNotifyClick);
  $("sms-form").addEventListener("submit", onSms);
  $("sms-text").addEventListener("input", renderSmsCounter);
  $("messages-refresh").addEventListener("click", () => loadSms());
  $("dial-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const number = $("dial-number").value.trim();
    if (number) dial(number);
  });
  $("calls-refresh").addEventListener("click", () => refreshCalls());
  $("dial-status-close").addEventListener("click", clearDialStatus);
  $("tab-recent").addEventListener("click", () => selectTab("recent", false));
  $("tab-missed").addEventListener("click", () => selectTab("missed", false));
  $("tab-recent").addEventListener("keydown", onTabKey);
  $("tab-missed").addEventListener("keydown", onTabKey);
  document.addEventListener("click", onDocumentClick);
  document.addEventListener("visibilitychange", renderNotifyControls);

  const saved = loadSession();
  if (!saved) {
    showLogin("");
    return;
  }
  state.session = saved;
  try {
    const me = await api("GET", "/api/me");
    state.session.user = me || saved.user;
    saveSession(state.session);
  } catch (e) {
    if (!state.session) return; // 401: endSession has shown the login form
    // The service is down: try the feed anyway, it reconnects by itself.
  }
  startDesk();
}

boot();
