// The pages next to the desk: the call log, the callback worklist, the reports, the
// clients, the users and one's own settings. Hash routes (#desk, #log, #worklist,
// #reports, #clients, #users, #settings), shown by role. app.js hands over what they
// share with the desk (the API, the DOM helpers, who is signed in) in `ctx`.
// As everywhere on this page, data only ever reaches the DOM as text.

import { barChart } from "./chart.js";
import { createClientsPage } from "./clients.js";
import {
  addDays,
  dateValue,
  dayStart,
  formatDateTime,
  formatDuration,
  formatFull,
  formatPercent,
  timeZone,
} from "./format.js";
import { language, t } from "./i18n.js";
import { createFaxesPage } from "./faxes.js";
import { createSettingsPage, createUsersPage } from "./users.js";

const VIEWS = ["desk", "log", "worklist", "faxes", "reports", "clients", "users", "settings"];
const SUPERVISORS = new Set(["supervisor", "admin"]);
const LOG_PAGE = 50;
const TASKS_PAGE = 200;
const OPEN_TASKS_LIMIT = 500; // the badge counts this many at most ("500+")
const CLIENT_CHOICES = 20;
const RELOAD_DELAY_MS = 300;
const REPORT_DAYS = 7; // the reports' default period, today included

// Something a person would type as a phone number rather than a name.
function looksLikeNumber(text) {
  return /^[+\d\s().-]+$/.test(text) && (text.match(/\d/g) || []).length >= 3;
}

export function createPages(ctx) {
  const { h, show, setText } = ctx;
  const $ = (id) => document.getElementById(id);

  let current = null;
  let worklistReload = null;

  const log = {
    params: new URLSearchParams(), // the applied filters
    calls: [],
    cursor: null,
    loaded: false,
    loading: false,
    error: null,
    filterError: null, // the filters cannot be applied (no such client)
    token: 0,
    searched: null, // the text the client choices were found for
    extensions: "", // the extension options, to rebuild them only when they change
  };
  // granted: the ids of the recordings whose media grants the open player keeps fresh.
  const player = { callId: null, granted: [], renewal: null, token: 0, status: null };
  const work = {
    status: "open",
    tasks: [],
    loaded: false,
    error: null,
    token: 0,
    openIds: new Set(),
    countToken: 0,
    countFull: false,
    editing: null, // the task whose "mark handled" form is open
    saving: new Set(),
    message: null, // {kind, key, params}: the last "mark handled" result
  };
  const report = { rows: [], group: "day", minutes: 60, loaded: false, error: null, token: 0 };
  const subpages = {
    clients: createClientsPage(ctx),
    faxes: createFaxesPage(ctx),
    users: createUsersPage(ctx),
    settings: createSettingsPage(ctx),
  };

  // -- who sees which page -------------------------------------------------------------

  function role() {
    return ctx.me()?.role || null;
  }

  function allowed(view) {
    switch (view) {
      case "desk":
      case "log":
        return true;
      case "worklist":
        return ctx.isReception() || Boolean(ctx.myExtension());
      case "reports":
        return SUPERVISORS.has(role());
      case "clients":
      case "faxes":
      case "settings":
        return true;
      case "users":
        return role() === "admin";
      default:
        return false;
    }
  }

  function wantedView() {
    const hash = window.location.hash.replace(/^#/, "");
    return VIEWS.includes(hash) && allowed(hash) ? hash : "desk";
  }

  function route(focus) {
    if (!ctx.signedIn()) return;
    const view = wantedView();
    const changed = view !== current;
    current = view;
    for (const name of VIEWS) show($(`${name}-view`), name === view);
    renderNav();
    if (!changed) return;
    ctx.leaving(); // a message about the last page does not follow to this one
    // Coming back to the log shows the calls since, with the same filters.
    if (view === "log") {
      if (log.loaded && !log.filterError) loadLog(false);
      else applyLogFilters();
    }
    if (view === "worklist") loadTasks();
    if (view === "reports" && !report.loaded) loadReport();
    subpages[view]?.shown();
    if (focus) {
      const heading = $(`${view}-title`);
      if (heading) heading.focus();
      else $("main").focus();
    }
  }

  function renderNav() {
    const nav = $("page-nav");
    show(nav, ctx.signedIn());
    for (const name of VIEWS) {
      const link = $(`nav-${name}`);
      show(link, allowed(name));
      if (name === current) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    renderBadge();
  }

  // -- downloads -----------------------------------------------------------------------

  // The last export's outcome per page ({kind, key, params}), shown in the language of
  // the moment.
  const exports = { log: null, report: null };

  function renderExportStatus(which) {
    const status = $(`${which}-export-status`);
    const outcome = exports[which];
    status.dataset.kind = outcome?.kind || "";
    setText(status, outcome ? t(outcome.key, outcome.params) : "");
  }

  async function download(which, path, filename, button) {
    button.disabled = true;
    exports[which] = { kind: "pending", key: "exporting", params: {} };
    renderExportStatus(which);
    try {
      const response = await ctx.fetchAuthorized(path, { headers: { Accept: "text/csv" } });
      const blob = await response.blob();
      const url = URL.createObjectURL(blob);
      const link = h("a", { href: url, download: filename, hidden: true });
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60000);
      exports[which] = { kind: "ok", key: "exported", params: { file: filename } };
    } catch (e) {
      exports[which] = { kind: "error", key: "exportFailed", params: { message: e.message } };
    } finally {
      button.disabled = false;
    }
    renderExportStatus(which);
  }

  // -- the call log --------------------------------------------------------------------

  async function clientChoice(text) {
    const select = $("log-client");
    if (log.searched === text && select.value) return select.value;
    const body = await ctx.api(
      "GET",
      `/api/clients?${new URLSearchParams({ q: text, limit: String(CLIENT_CHOICES) })}`,
    );
    const clients = body?.clients || [];
    log.searched = text;
    select.replaceChildren(
      ...clients.map((client) => {
        const phone = client.phones?.[0]?.number;
        const label = phone ? `${client.name} · ${ctx.formatNumber(phone)}` : client.name;
        return h("option", { value: String(client.id) }, label);
      }),
    );
    show($("log-client-field"), clients.length > 1);
    if (clients.length === 0) {
      throw Object.assign(new Error(t("noClientFound", { text })), {
        key: "noClientFound",
        params: { text },
      });
    }
    $("log-status").textContent =
      clients.length > 1 ? t("clientsFound", { count: clients.length }) : "";
    return String(clients[0].id);
  }

  async function logFilterParams() {
    const params = new URLSearchParams();
    const from = $("log-from").value;
    const to = $("log-to").value;
    if (from) params.set("since", dayStart(from).toISOString());
    if (to) params.set("until", dayStart(to, 1).toISOString());
    for (const name of ["extension", "direction", "outcome"]) {
      const value = $(`log-${name}`).value;
      if (value) params.set(name, value);
    }
    if ($("log-missed").checked) params.set("missed", "true");
    const text = $("log-search").value.trim();
    if (!text) {
      log.searched = null;
      show($("log-client-field"), false);
    } else if (looksLikeNumber(text)) {
      log.searched = null;
      show($("log-client-field"), false);
      params.set("number", text);
    } else {
      params.set("client_id", await clientChoice(text));
    }
    return params;
  }

  async function applyLogFilters() {
    let params;
    try {
      params = await logFilterParams();
    } catch (e) {
      log.token += 1; // whatever was loading is not what the filters say now
      log.error = null;
      log.filterError = e.key ? { key: e.key, params: e.params } : { message: e.message };
      log.calls = [];
      log.cursor = null;
      log.loading = false;
      log.loaded = true;
      renderLog();
      return;
    }
    log.filterError = null;
    log.params = params;
    await loadLog(false);
  }

  async function loadLog(more) {
    const token = ++log.token;
    const params = new URLSearchParams(log.params);
    params.set("limit", String(LOG_PAGE));
    if (more && log.cursor) params.set("cursor", log.cursor);
    log.loading = true;
    renderLogState();
    try {
      const body = await ctx.api("GET", `/api/calls?${params}`);
      if (token !== log.token) return;
      const calls = body?.calls || [];
      log.calls = more ? log.calls.concat(calls) : calls;
      log.cursor = body?.next_cursor || null;
      log.error = null;
    } catch (e) {
      if (token !== log.token) return;
      log.error = e.message;
      if (!more) log.calls = [];
    }
    log.loading = false;
    log.loaded = true;
    renderLog();
  }

  function resetLogFilters() {
    $("log-filters").reset();
    log.searched = null;
    show($("log-client-field"), false);
    applyLogFilters();
  }

  function exportLog() {
    const params = new URLSearchParams(log.params);
    params.set("tz", timeZone());
    const name = `calls-${dateValue()}.csv`;
    download("log", `/api/calls/export?${params}`, name, $("log-export"));
  }

  function renderLogState() {
    const table = $("log-table");
    table.setAttribute("aria-busy", String(log.loading));
    table.dataset.state = log.loading ? "loading" : log.error ? "error" : "ready";
    $("log-more").disabled = log.loading;
  }

  function renderLogScope() {
    const scope = $("log-scope");
    if (ctx.isReception()) setText(scope, "");
    else if (ctx.myExtension()) setText(scope, t("logScopeOwn", { ext: ctx.myExtension() }));
    else setText(scope, t("logScopeNone"));
  }

  function renderExtensionOptions() {
    const names = ctx.names();
    const extensions = [...new Set([...names.keys(), ...ctx.lineExtensions()])]
      .filter((ext) => /^\d{1,10}$/.test(ext))
      .sort((a, b) => Number(a) - Number(b) || a.localeCompare(b));
    const key = `${language()}|${extensions.map((ext) => `${ext}:${names.get(ext) || ""}`).join(",")}`;
    if (key === log.extensions) return;
    log.extensions = key;
    const select = $("log-extension");
    const chosen = select.value;
    select.replaceChildren(
      h("option", { value: "" }, t("anyOption")),
      ...extensions.map((ext) =>
        h("option", { value: ext }, names.get(ext) ? `${ext} · ${names.get(ext)}` : ext),
      ),
    );
    select.value = extensions.includes(chosen) ? chosen : "";
  }

  function personLabel(ext) {
    const name = ctx.names().get(ext);
    return name ? `${ext} · ${name}` : ext;
  }

  function renderLogRow(call) {
    const missed = Boolean(call.missed);
    const rang = [...new Set((call.legs || []).map((leg) => leg.extension))];
    const transfers = (call.transfers || []).map((x) => `${x.from || "?"}→${x.to || "?"}`);
    const when = formatDateTime(call.started_at);
    let number;
    if (call.external_number) {
      number = ctx.phoneButton(
        call.external_number,
        ctx.formatNumber(call.external_number),
        `log-${call.id}-number`,
      );
    } else if (call.caller_extension) {
      number = h("span", { class: "phone-text" }, call.caller_extension);
    } else {
      number = h("span", { class: "muted" }, "—");
    }
    const client = call.client;
    const manager = client?.manager;
    const outcome = ctx.outcomeLabel(call);
    return h(
      "tr",
      {
        class: `log-row${missed ? " log-missed" : ""}`,
        dataset: { callId: call.id, missed: String(missed), direction: call.direction || "" },
      },
      h(
        "td",
        { class: "log-time" },
        h("time", { datetime: call.started_at || null, title: formatFull(call.started_at) }, when),
      ),
      h("td", { class: "log-direction" }, ctx.directionLabel(call.direction)),
      h("td", { class: "log-number" }, number),
      h(
        "td",
        { class: "log-who" },
        client
          ? h(
              "a",
              {
                class: "log-client",
                href: "#clients",
                dataset: { clientId: String(client.id), openClientLink: String(client.id) },
              },
              client.name,
            )
          : null,
        // The network's name only where the directory knows nobody: it is not a contact.
        !client && call.external_name
          ? h("span", { class: "log-caller-name" }, t("callerIdIs", { name: call.external_name }))
          : null,
        manager
          ? h(
              "span",
              { class: "log-manager" },
              t("managerOf", {
                name: manager.extension ? `${manager.name} (${manager.extension})` : manager.name,
              }),
            )
          : null,
      ),
      h("td", { class: "log-rang" }, rang.join(", ")),
      h(
        "td",
        { class: "log-answered" },
        call.answered_by ? personLabel(call.answered_by) : h("span", { class: "muted" }, "—"),
      ),
      h("td", { class: "num log-wait" }, formatDuration(call.wait_seconds)),
      h("td", { class: "num log-talk" }, formatDuration(call.talk_seconds)),
      h(
        "td",
        { class: "log-outcome" },
        call.fax ? h("span", { class: "fax-mark" }, `${t("faxPages", { pages: call.fax.pages ?? 0 })} · `) : null,
        missed ? h("strong", { class: "missed-mark" }, `${outcome} · ${t("missed")}`) : outcome,
        call.recovered_from_cdr
          ? h("span", { class: "cdr-mark", title: t("recoveredFromCdrHint") }, ` · ${t("recoveredFromCdr")}`)
          : null,
      ),
      h("td", { class: "log-transfers" }, transfers.join(", ")),
      h(
        "td",
        { class: "log-play" },
        call.recording_count > 0
          ? h(
              "button",
              {
                type: "button",
                class: "btn btn-small play",
                dataset: { playCall: call.id, focusKey: `play-${call.id}` },
                "aria-label": t("playRecording", { time: when }),
                title: t("playRecording", { time: when }),
                "aria-pressed": String(player.callId === call.id),
              },
              "▶",
            )
          : null,
      ),
    );
  }

  function renderLog() {
    const rows = $("log-rows");
    ctx.replaceKeepingFocus(rows, () => rows.replaceChildren(...log.calls.map(renderLogRow)));
    renderLogState();
    renderLogScope();
    renderExtensionOptions();
    setText(
      $("log-error"),
      log.filterError
        ? (log.filterError.key && t(log.filterError.key, log.filterError.params)) ||
            t("callsLoadFailed", { message: log.filterError.message })
        : log.error
          ? t("callsLoadFailed", { message: log.error })
          : "",
    );
    setText(
      $("log-empty"),
      log.loaded && !log.error && !log.filterError && log.calls.length === 0 ? t("logEmpty") : "",
    );
    show($("log-more"), Boolean(log.cursor));
    if (log.loaded && !log.error) {
      $("log-status").textContent = t("logShown", { count: log.calls.length });
    }
  }

  // -- recordings ----------------------------------------------------------------------

  function closePlayer() {
    player.token += 1;
    clearTimeout(player.renewal);
    player.renewal = null;
    player.granted = [];
    for (const audio of $("log-player-items").querySelectorAll("audio")) {
      audio.pause();
      audio.removeAttribute("src"); // stop streaming
      audio.load();
    }
    const previous = player.callId;
    player.callId = null;
    player.status = null;
    $("log-player-items").replaceChildren();
    show($("log-player"), false);
    if (previous) {
      for (const button of document.querySelectorAll("button[data-play-call]")) {
        button.setAttribute("aria-pressed", "false");
      }
    }
  }

  function playerTitle(call) {
    const number = call.external_number
      ? ctx.formatNumber(call.external_number)
      : call.caller_extension || "—";
    return t("recordingOf", { time: formatDateTime(call.started_at), number });
  }

  function setPlayerStatus(kind, key, params = {}) {
    player.status = { kind, key, params };
    renderPlayerStatus();
  }

  function renderPlayerStatus() {
    const status = $("log-player-status");
    status.dataset.kind = player.status?.kind || "";
    setText(status, player.status ? t(player.status.key, player.status.params) : "");
  }

  // The open player in the language of the moment.
  function renderPlayer() {
    const call = log.calls.find((one) => one.id === player.callId);
    if (!call) return;
    $("log-player-title").textContent = playerTitle(call);
    renderPlayerStatus();
    for (const label of $("log-player-items").querySelectorAll(".recording-label")) {
      label.textContent = t("recordingN", { n: label.dataset.n });
    }
    for (const note of $("log-player-items").querySelectorAll(".recording-note")) {
      note.textContent = t(note.dataset.key);
    }
    for (const audio of $("log-player-items").querySelectorAll("audio")) {
      const n = audio.closest(".recording")?.querySelector(".recording-label")?.dataset.n;
      audio.setAttribute("aria-label", `${t("recordingN", { n })}: ${playerTitle(call)}`);
    }
  }

  // A recording's media grant: a short-lived HttpOnly cookie for that recording's URL
  // only, so its <audio> streams the file itself with Range requests (seeking a long call
  // fetches only what is heard) and the token never goes in a URL.
  function grantRecording(id) {
    return ctx.api("POST", `/api/recordings/${id}/grant`, undefined, {
      credentials: "same-origin",
    });
  }

  // Renew the open player's grants at half their life, while it stays open.
  function renewGrantsIn(seconds) {
    clearTimeout(player.renewal);
    const token = player.token;
    player.renewal = setTimeout(
      async () => {
        if (token !== player.token) return;
        let next = 30; // a failure: try again soon (a lapsed grant is also asked for on error)
        try {
          for (const id of player.granted) next = (await grantRecording(id)).expires_in / 2;
        } catch {
          // as above
        }
        if (token === player.token) renewGrantsIn(next);
      },
      Math.max(5, seconds) * 1000,
    );
  }

  // A grant that lapsed anyway (the computer slept, the service restarted): ask again
  // once and go on from where the audio was.
  function recoverOnError(audio, recordingId, token) {
    let retried = false;
    audio.addEventListener("canplay", () => {
      retried = false;
    });
    audio.addEventListener("error", async () => {
      if (token !== player.token || !audio.getAttribute("src")) return;
      const failed = () =>
        setPlayerStatus("error", "recordingFailed", {
          message: audio.error?.message || t("networkError"),
        });
      if (retried) {
        failed();
        return;
      }
      retried = true;
      const at = audio.currentTime;
      try {
        const grant = await grantRecording(recordingId);
        if (token !== player.token) return;
        if (at) {
          audio.addEventListener("loadedmetadata", () => (audio.currentTime = at), { once: true });
        }
        audio.src = grant.url;
      } catch (e) {
        if (token !== player.token) return;
        if (e.status === 403) setPlayerStatus("error", "recordingForbidden");
        else failed();
      }
    });
  }

  async function openPlayer(callId) {
    const call = log.calls.find((one) => one.id === callId);
    if (!call) return;
    closePlayer();
    const token = player.token;
    player.callId = callId;
    for (const button of document.querySelectorAll("button[data-play-call]")) {
      button.setAttribute("aria-pressed", String(button.dataset.playCall === callId));
    }
    const panel = $("log-player");
    panel.dataset.callId = callId;
    $("log-player-title").textContent = playerTitle(call);
    setPlayerStatus("pending", "recordingLoading");
    show(panel, true);
    const items = $("log-player-items");
    try {
      const body = await ctx.api("GET", `/api/calls/${encodeURIComponent(callId)}/recordings`);
      if (token !== player.token) return;
      const recordings = body?.recordings || [];
      if (recordings.length === 0) {
        setPlayerStatus("", "noRecordings");
        return;
      }
      let first = null;
      for (const [index, recording] of recordings.entries()) {
        const label = h(
          "span",
          { class: "recording-label", dataset: { n: String(index + 1) } },
          t("recordingN", { n: index + 1 }),
        );
        const item = h(
          "div",
          { class: "recording", dataset: { recordingId: String(recording.id) } },
          label,
        );
        items.append(item);
        if (recording.deleted || !recording.available) {
          const key = recording.deleted
            ? "recordingDeleted"
            : recording.state === "missing"
              ? "recordingMissing"
              : "recordingUnavailable";
          item.append(h("span", { class: "muted recording-note", dataset: { key } }, t(key)));
          continue;
        }
        // <audio src> cannot send the token: a media grant (a cookie) stands in for it.
        const grant = await grantRecording(recording.id);
        if (token !== player.token) return;
        player.granted.push(recording.id);
        if (player.granted.length === 1) renewGrantsIn(grant.expires_in / 2);
        const audio = h("audio", {
          controls: true,
          preload: "metadata",
          src: grant.url,
          "aria-label": `${t("recordingN", { n: index + 1 })}: ${playerTitle(call)}`,
        });
        recoverOnError(audio, recording.id, token);
        item.append(audio);
        first = first || audio;
      }
      setPlayerStatus(first ? "ok" : "", first ? "recordingReady" : "recordingUnavailable");
      if (first) {
        first.focus();
        first.play().catch(() => {}); // autoplay may be refused: the controls are there
      }
    } catch (e) {
      if (token !== player.token) return;
      if (e.status === 403) setPlayerStatus("error", "recordingForbidden");
      else setPlayerStatus("error", "recordingFailed", { message: e.message });
    }
  }

  // -- the missed-call worklist -----------------------------------------------------------

  async function loadTaskCount() {
    if (!allowed("worklist")) return;
    const token = ++work.countToken;
    try {
      const body = await ctx.api("GET", `/api/tasks?status=open&limit=${OPEN_TASKS_LIMIT}`);
      if (token !== work.countToken) return;
      const tasks = body?.tasks || [];
      work.openIds = new Set(tasks.map((task) => task.id));
      work.countFull = tasks.length >= OPEN_TASKS_LIMIT;
    } catch {
      // the badge waits for the next change or reconnect
    }
    renderBadge();
  }

  function renderBadge() {
    const badge = $("worklist-count");
    const count = work.openIds.size;
    const text = count ? (work.countFull ? `${count}+` : String(count)) : "";
    setText(badge, allowed("worklist") ? text : "");
    badge.dataset.count = String(count);
    const link = $("nav-worklist");
    if (count) link.title = t("openTasksCount", { count: text });
    else link.removeAttribute("title");
  }

  async function loadTasks() {
    if (!allowed("worklist")) return;
    const token = ++work.token;
    const table = $("worklist-table");
    table.setAttribute("aria-busy", "true");
    try {
      const body = await ctx.api("GET", `/api/tasks?status=${work.status}&limit=${TASKS_PAGE}`);
      if (token !== work.token) return;
      work.tasks = body?.tasks || [];
      work.error = null;
      if (work.status === "open" && work.tasks.length < TASKS_PAGE) {
        // The whole open list: the badge is exactly this.
        work.countToken += 1;
        work.openIds = new Set(work.tasks.map((task) => task.id));
        work.countFull = false;
        renderBadge();
      }
    } catch (e) {
      if (token !== work.token) return;
      work.error = e.message;
    }
    work.loaded = true;
    table.setAttribute("aria-busy", "false");
    renderWorklist();
  }

  function scheduleTasksReload() {
    clearTimeout(worklistReload);
    worklistReload = setTimeout(() => {
      if (current === "worklist") loadTasks();
    }, RELOAD_DELAY_MS);
  }

  function showTasks(status) {
    if (work.status === status) return;
    work.status = status;
    work.tasks = [];
    work.editing = null;
    work.message = null;
    renderWorklist();
    loadTasks();
  }

  function managerCell(task) {
    if (task.manager) {
      const m = task.manager;
      return h(
        "span",
        { class: "task-manager" },
        m.extension ? `${m.name} (${m.extension})` : m.name,
      );
    }
    if (task.assignee_extension) {
      return h("span", { class: "task-manager" }, personLabel(task.assignee_extension));
    }
    return h("span", { class: "muted" }, "—");
  }

  function taskCells(task) {
    return [
      h(
        "td",
        { class: "task-time" },
        h(
          "time",
          { datetime: task.created_at, title: formatFull(task.created_at) },
          formatDateTime(task.created_at),
        ),
      ),
      h(
        "td",
        { class: "task-number" },
        ctx.phoneButton(task.number, ctx.formatNumber(task.number), `task-${task.id}-number`),
      ),
      h(
        "td",
        { class: "task-client" },
        task.client
          ? h("span", { class: "task-client-name" }, task.client.name)
          : h("span", { class: "muted" }, t("unknownCaller")),
      ),
      h("td", {}, managerCell(task)),
      h("td", { class: "num task-missed" }, String(task.missed_calls ?? 1)),
    ];
  }

  function renderOpenTask(task) {
    const number = ctx.formatNumber(task.number);
    const editing = work.editing === task.id;
    const saving = work.saving.has(task.id);
    const row = h(
      "tr",
      { class: "task-row", dataset: { taskId: String(task.id), number: task.number } },
      taskCells(task),
      h(
        "td",
        { class: "task-actions" },
        ctx.canDial()
          ? h(
              "button",
              {
                type: "button",
                class: "btn btn-small btn-primary",
                dataset: { dialNumber: task.number, focusKey: `task-${task.id}-call` },
                "aria-label": t("callBackNumber", { number }),
              },
              t("callBack"),
            )
          : null,
        h(
          "button",
          {
            type: "button",
            class: "btn btn-small",
            dataset: { handleTask: String(task.id), focusKey: `task-${task.id}-handle` },
            "aria-label": t("markHandledNumber", { number }),
            "aria-expanded": String(editing),
            "aria-controls": editing ? `handle-form-${task.id}` : null,
            disabled: saving,
          },
          t("markHandled"),
        ),
      ),
    );
    if (!editing) return [row];
    const commentId = `handle-comment-${task.id}`;
    const form = h(
      "form",
      { class: "handle-form", id: `handle-form-${task.id}`, dataset: { taskId: String(task.id) } },
      h("label", { for: commentId }, t("handleComment")),
      h("textarea", {
        id: commentId,
        name: "comment",
        rows: "2",
        maxlength: "2000",
        dataset: { focusKey: commentId },
      }),
      h(
        "div",
        { class: "handle-actions" },
        h(
          "button",
          { type: "submit", class: "btn btn-primary btn-small", disabled: saving },
          saving ? t("handling") : t("handleSave"),
        ),
        h(
          "button",
          { type: "button", class: "btn btn-small", dataset: { cancelHandle: String(task.id) } },
          t("cancel"),
        ),
      ),
    );
    return [row, h("tr", { class: "handle-row" }, h("td", { colspan: "6" }, form))];
  }

  function reasonLabel(reason) {
    if (!reason) return "";
    const key = `reason${reason[0].toUpperCase()}${reason.slice(1)}`;
    const text = t(key);
    return text === key ? reason : text;
  }

  function renderClosedTask(task) {
    const by = task.closed_by ? task.closed_by.name || task.closed_by.username : null;
    return h(
      "tr",
      { class: "task-row task-closed", dataset: { taskId: String(task.id), number: task.number } },
      taskCells(task),
      h(
        "td",
        { class: "task-handled" },
        h(
          "time",
          { datetime: task.closed_at, title: formatFull(task.closed_at) },
          formatDateTime(task.closed_at),
        ),
      ),
      h("td", { class: "task-how" }, reasonLabel(task.closed_reason)),
      h("td", { class: "task-by" }, by || h("span", { class: "muted" }, "—")),
      h("td", { class: "task-comment" }, task.comment || ""),
    );
  }

  function renderWorklist() {
    const open = work.status === "open";
    $("worklist-show-open").setAttribute("aria-pressed", String(open));
    $("worklist-show-closed").setAttribute("aria-pressed", String(!open));
    const columns = [
      t("colFirstMissed"),
      t("colNumber"),
      t("client"),
      t("manager"),
      t("colMissedCount"),
      ...(open
        ? [t("colActions")]
        : [t("colHandled"), t("colHow"), t("colHandledBy"), t("colComment")]),
    ];
    $("worklist-head").replaceChildren(
      h(
        "tr",
        {},
        columns.map((name, index) =>
          h("th", { scope: "col", class: index === 4 ? "num" : null }, name),
        ),
      ),
    );
    const rows = $("worklist-rows");
    const focusedComment = document.activeElement?.closest?.(".handle-form textarea");
    const draft = focusedComment ? { id: focusedComment.id, value: focusedComment.value } : null;
    ctx.replaceKeepingFocus(rows, () =>
      rows.replaceChildren(
        ...work.tasks.flatMap((task) => (open ? renderOpenTask(task) : [renderClosedTask(task)])),
      ),
    );
    if (draft && $(draft.id)) $(draft.id).value = draft.value;
    const table = $("worklist-table");
    table.dataset.status = work.status;
    table.dataset.state = work.loaded ? "ready" : "loading";
    let problem = work.error ? t("tasksLoadFailed", { message: work.error }) : "";
    if (!problem && work.message?.kind === "error")
      problem = t(work.message.key, work.message.params);
    setText($("worklist-error"), problem);
    const empty = open ? t("tasksEmptyOpen") : t("tasksEmptyClosed");
    setText(
      $("worklist-empty"),
      work.loaded && !work.error && work.tasks.length === 0 ? empty : "",
    );
    const status = $("worklist-status");
    if (work.message) {
      status.dataset.kind = work.message.kind;
      status.textContent = t(work.message.key, work.message.params);
    } else if (work.loaded) {
      status.textContent = t("tasksShown", { count: work.tasks.length });
    }
  }

  function startHandling(taskId) {
    work.editing = work.editing === taskId ? null : taskId;
    work.message = null;
    renderWorklist();
    if (work.editing !== null) $(`handle-comment-${taskId}`)?.focus();
  }

  function cancelHandling(taskId) {
    work.editing = null;
    renderWorklist();
    document.querySelector(`button[data-handle-task="${taskId}"]`)?.focus();
  }

  async function saveHandling(taskId, comment) {
    const task = work.tasks.find((one) => one.id === taskId);
    if (!task || work.saving.has(taskId)) return;
    work.saving.add(taskId);
    renderWorklist();
    const index = work.tasks.indexOf(task);
    try {
      await ctx.api("POST", `/api/tasks/${taskId}/close`, { comment });
      work.tasks = work.tasks.filter((one) => one.id !== taskId);
      work.openIds.delete(taskId);
      work.editing = null;
      work.message = {
        kind: "ok",
        key: "handledOk",
        params: { number: ctx.formatNumber(task.number) },
      };
      renderBadge();
    } catch (e) {
      work.message = { kind: "error", key: "handleFailed", params: { message: e.message } };
      if (e.status === 404 || e.status === 409) scheduleTasksReload();
    } finally {
      work.saving.delete(taskId);
    }
    renderWorklist();

    // Keep the keyboard where the work goes on: the next task, else the heading.
    const next = work.tasks[Math.min(index, work.tasks.length - 1)];
    const target = next
      ? document.querySelector(`button[data-handle-task="${next.id}"]`)
      : $("worklist-title");
    if (work.editing === null) target?.focus();
  }

  // -- reports -------------------------------------------------------------------------

  function defaultReportPeriod() {
    const today = dateValue();
    if (!$("report-to").value) $("report-to").value = today;
    if (!$("report-from").value) $("report-from").value = addDays(today, -(REPORT_DAYS - 1));
  }

  function reportParams(format) {
    defaultReportPeriod();
    const from = $("report-from").value;
    const to = $("report-to").value;
    if (!from || !to || to < from) throw new Error(t("reportBadPeriod"));
    const minutes = Math.max(1, Math.min(10080, Number($("report-minutes").value) || 60));
    return new URLSearchParams({
      since: dayStart(from).toISOString(),
      until: dayStart(to, 1).toISOString(),
      group: $("report-group").value,
      tz: timeZone(),
      callback_minutes: String(minutes),
      format,
    });
  }

  async function loadReport() {
    const token = ++report.token;
    let params;
    try {
      params = reportParams("json");
    } catch (e) {
      report.error = e.message;
      renderReport();
      return;
    }
    $("report-table").setAttribute("aria-busy", "true");
    try {
      const body = await ctx.api("GET", `/api/reports/calls?${params}`);
      if (token !== report.token) return;
      report.rows = body?.rows || [];
      report.group = body?.group || params.get("group");
      report.minutes = Number(params.get("callback_minutes"));
      report.error = null;
    } catch (e) {
      if (token !== report.token) return;
      report.error = e.message;
      report.rows = [];
    }
    report.loaded = true;
    $("report-table").setAttribute("aria-busy", "false");
    renderReport();
  }

  function exportReport() {
    let params;
    try {
      params = reportParams("csv");
    } catch (e) {
      setText($("report-error"), e.message);
      return;
    }
    const name = `calls-by-${params.get("group")}-${$("report-from").value}-${$("report-to").value}.csv`;
    download("report", `/api/reports/calls?${params}`, name, $("report-export"));
  }

  function groupLabel(key) {
    return report.group === "operator" ? personLabel(String(key)) : String(key);
  }

  function renderReport() {
    const perOperator = report.group === "operator";
    // The columns after "calls" add up to it (cti/reports.py); the legend says what each is.
    const parts = [
      "answered",
      ...(perOperator ? ["answered_elsewhere"] : []),
      "missed",
      ...(perOperator ? ["not_answered"] : []),
      "unknown",
      "outgoing",
    ];
    const columns = [
      { day: t("colDay"), hour: t("colHour"), operator: t("colOperator") }[report.group] || "",
      t("colCalls"),
      ...parts.map((part) => t(`col_${part}`)),
      t("colMissedRate"),
      t("colAvgWait"),
      t("colAvgTalk"),
      t("colCalledBack", { minutes: report.minutes }),
    ];
    $("report-head").replaceChildren(
      h(
        "tr",
        {},
        columns.map((name, index) => h("th", { scope: "col", class: index ? "num" : null }, name)),
      ),
    );
    $("report-notes").replaceChildren(
      h("dt", {}, t("colCalls")),
      h("dd", {}, t(perOperator ? "legendCallsOperator" : "legendCalls")),
      ...parts.flatMap((part) => [h("dt", {}, t(`col_${part}`)), h("dd", {}, t(`legend_${part}`))]),
    );
    $("report-rows").replaceChildren(
      ...report.rows.map((row) =>
        h(
          "tr",
          { class: "report-row", dataset: { key: String(row.key) } },
          h("th", { scope: "row" }, groupLabel(row.key)),
          h("td", { class: "num", dataset: { col: "calls" } }, String(row.calls)),
          ...parts.map((part) =>
            h(
              "td",
              { class: "num", dataset: { col: part } },
              part === "outgoing" && row.outgoing
                ? t("outgoingCell", { count: row.outgoing, answered: row.outgoing_answered })
                : String(row[part] ?? 0),
            ),
          ),
          h(
            "td",
            { class: "num", dataset: { col: "missed_rate" } },
            formatPercent(row.missed_rate),
          ),
          h("td", { class: "num" }, formatDuration(row.average_wait_seconds)),
          h("td", { class: "num" }, formatDuration(row.average_talk_seconds)),
          h(
            "td",
            { class: "num", dataset: { col: "called_back_in_time" } },
            String(row.called_back_in_time),
          ),
        ),
      ),
    );
    const series = [
      { key: "calls", name: t("seriesCalls"), cls: "bar-calls" },
      { key: "answered", name: t("seriesAnswered"), cls: "bar-answered" },
      { key: "missed", name: t("seriesMissed"), cls: "bar-missed" },
    ];
    // Every day (hour) of the period has a row, quiet ones too: "no calls" is all zeros.
    const anyCalls = report.rows.some((row) => Number(row.calls) > 0);
    const box = $("report-chart-box");
    show(box, anyCalls);
    if (anyCalls) {
      // Drawn at the size it is shown (it scales if the window changes).
      const width = Math.max(480, Math.round($("report-chart").clientWidth || 960));
      const chart = barChart({
        id: "report-svg",
        width,
        title: t("chartTitle"),
        series,
        groups: report.rows.map((row) => ({
          label: groupLabel(row.key),
          values: [row.calls, row.answered, row.missed],
        })),
        barTitle: (group, one, value) =>
          t("barTitle", { group: group.label, series: one.name, value }),
      });
      $("report-chart").replaceChildren(chart);
      $("report-legend").replaceChildren(
        ...series.map((one) =>
          h(
            "span",
            { class: "legend-item" },
            h("span", { class: `swatch ${one.cls}`, "aria-hidden": "true" }),
            one.name,
          ),
        ),
      );
    } else {
      $("report-chart").replaceChildren();
    }
    setText(
      $("report-error"),
      report.error ? t("reportLoadFailed", { message: report.error }) : "",
    );
    setText(
      $("report-empty"),
      report.loaded && !report.error && !anyCalls ? t("reportEmpty") : "",
    );
    if (report.loaded && !report.error) {
      $("report-status").textContent = t("reportShown", { count: report.rows.length });
    }
    $("report-table").dataset.state = report.loaded ? "ready" : "loading";
  }

  // -- wiring ---------------------------------------------------------------------------

  function onClick(event) {
    const target = event.target instanceof Element ? event.target : null;
    if (!target) return;
    const clientLink = target.closest("a[data-open-client-link]");
    if (clientLink) {
      subpages.clients.open(Number(clientLink.dataset.openClientLink));
      return; // the link itself goes to #clients
    }
    const play = target.closest("button[data-play-call]");
    if (play) {
      if (player.callId === play.dataset.playCall) closePlayer();
      else openPlayer(play.dataset.playCall);
      return;
    }
    const dialButton = target.closest("button[data-dial-number]");
    if (dialButton) {
      ctx.dial(dialButton.dataset.dialNumber);
      return;
    }
    const handle = target.closest("button[data-handle-task]");
    if (handle && !handle.disabled) {
      startHandling(Number(handle.dataset.handleTask));
      return;
    }
    const cancel = target.closest("button[data-cancel-handle]");
    if (cancel) cancelHandling(Number(cancel.dataset.cancelHandle));
  }

  // Enter in a filter form shows the result, from a <select> or a checkbox too (which
  // browsers do not submit a form from).
  function enterSubmits(form, submit) {
    form.addEventListener("keydown", (event) => {
      const target = event.target;
      if (event.key !== "Enter" || event.isComposing) return;
      if (
        target.tagName === "SELECT" ||
        (target.tagName === "INPUT" && target.type === "checkbox")
      ) {
        event.preventDefault();
        submit();
      }
    });
  }

  function bind() {
    window.addEventListener("hashchange", () => route(true));
    enterSubmits($("log-filters"), applyLogFilters);
    enterSubmits($("report-form"), loadReport);
    $("log-filters").addEventListener("submit", (event) => {
      event.preventDefault();
      applyLogFilters();
    });
    $("log-reset").addEventListener("click", resetLogFilters);
    $("log-export").addEventListener("click", exportLog);
    $("log-more").addEventListener("click", () => loadLog(true));
    $("log-client").addEventListener("change", () => applyLogFilters());
    $("log-search").addEventListener("input", () => {
      log.searched = null; // another text: look for its clients again
    });
    $("log-player-close").addEventListener("click", () => {
      const callId = player.callId;
      closePlayer();
      if (callId) document.querySelector(`button[data-play-call="${CSS.escape(callId)}"]`)?.focus();
    });
    $("worklist-show-open").addEventListener("click", () => showTasks("open"));
    $("worklist-show-closed").addEventListener("click", () => showTasks("closed"));
    $("worklist-refresh").addEventListener("click", () => loadTasks());
    $("worklist-rows").addEventListener("submit", (event) => {
      const form = event.target.closest("form.handle-form");
      if (!form) return;
      event.preventDefault();
      saveHandling(Number(form.dataset.taskId), form.elements.comment.value.trim());
    });
    $("worklist-rows").addEventListener("keydown", (event) => {
      if (event.key !== "Escape") return;
      const form = event.target.closest?.("form.handle-form");
      if (form) cancelHandling(Number(form.dataset.taskId));
    });
    $("report-form").addEventListener("submit", (event) => {
      event.preventDefault();
      loadReport();
    });
    $("report-export").addEventListener("click", exportReport);
    for (const id of ["log-view", "worklist-view"]) $(id).addEventListener("click", onClick);
  }

  bind();

  return {
    // Signed in (or the hello told who we are): show the pages this user may use.
    start() {
      current = null;
      route(false);
      loadTaskCount();
    },
    hello() {
      current = null;
      route(false);
      loadTaskCount();
    },
    // Frames may have been missed: count again, reload what is on screen.
    resync() {
      loadTaskCount();
      if (current === "worklist") scheduleTasksReload();
    },
    taskChanged(data) {
      if (!data || !Number.isInteger(data.task_id)) return;
      if (data.open) work.openIds.add(data.task_id);
      else work.openIds.delete(data.task_id);
      renderBadge();
      if (current === "worklist") scheduleTasksReload();
      else work.loaded = false;
    },
    faxChanged(data) {
      subpages.faxes.changed(data);
    },
    namesChanged() {
      if (log.loaded) renderExtensionOptions();
    },
    render() {
      if (!ctx.signedIn()) return;
      renderNav();
      log.extensions = ""; // the "Any" option's language
      if (log.loaded) renderLog();
      if (work.loaded) renderWorklist();
      if (report.loaded) renderReport();
      renderExportStatus("log");
      renderExportStatus("report");
      if (player.callId) renderPlayer();
      for (const sub of Object.values(subpages)) sub.render();
    },
    reset() {
      closePlayer();
      clearTimeout(worklistReload);
      current = null;
      log.token += 1;
      work.token += 1;
      work.countToken += 1;
      report.token += 1;
      Object.assign(log, {
        filterError: null,
        calls: [],
        cursor: null,
        loaded: false,
        error: null,
        searched: null,
        extensions: "",
      });
      log.params = new URLSearchParams();
      Object.assign(work, {
        tasks: [],
        loaded: false,
        error: null,
        editing: null,
        message: null,
        status: "open",
      });
      work.openIds = new Set();
      work.saving = new Set();
      Object.assign(report, { rows: [], loaded: false, error: null });
      $("log-filters").reset();
      $("report-form").reset();
      $("log-rows").replaceChildren();
      $("worklist-rows").replaceChildren();
      $("report-rows").replaceChildren();
      $("report-chart").replaceChildren();
      show($("log-client-field"), false);
      show($("report-chart-box"), false);
      for (const id of [
        "log-error",
        "log-empty",
        "worklist-error",
        "worklist-empty",
        "report-error",
        "report-empty",
      ]) {
        setText($(id), "");
      }
      exports.log = exports.report = null;
      renderExportStatus("log");
      renderExportStatus("report");
      for (const sub of Object.values(subpages)) sub.reset();
      for (const name of VIEWS) show($(`${name}-view`), false);
      show($("page-nav"), false);
      renderBadge();
    },
  };
}
