// The users page (#users, admins): add users, change their role, extension and time zone,
// disable them, set a password, revoke their tokens. And everyone's own settings
// (#settings): the time zone the pages show times in. Data reaches the DOM as text only.

import { formatDateTime, isTimeZone } from "./format.js";
import { t } from "./i18n.js";

const ROLES = ["operator", "receptionist", "sales", "supervisor", "admin"];

// The zones the browser knows, for a <datalist>; a few common ones when it cannot say.
function zones() {
  try {
    return Intl.supportedValuesOf("timeZone");
  } catch {
    return ["Europe/Moscow", "Europe/Kaliningrad", "Asia/Yekaterinburg", "Asia/Tbilisi", "Asia/Phnom_Penh", "UTC"];
  }
}

export function createUsersPage(ctx) {
  const { h, show, setText } = ctx;
  const $ = (id) => document.getElementById(id);
  const page = { users: [], loaded: false, error: null, editing: null, message: null, created: null };

  async function load() {
    try {
      page.users = (await ctx.api("GET", "/api/users")).users || [];
      page.error = null;
    } catch (e) {
      page.error = e.message;
    }
    page.loaded = true;
    render();
  }

  function roleOptions(chosen) {
    return ROLES.map((role) => h("option", { value: role, selected: role === chosen }, ctx.roleLabel(role)));
  }

  function userRow(user) {
    const editing = page.editing === user.username;
    const row = h(
      "tr",
      { class: `user-row${user.is_active ? "" : " user-disabled"}`, dataset: { username: user.username } },
      h("td", { class: "user-login" }, user.username),
      h("td", {}, user.display_name),
      h("td", {}, ctx.roleLabel(user.role)),
      h("td", {}, user.extension || "—"),
      h("td", {}, user.time_zone || h("span", { class: "muted" }, t("officeTimeZone"))),
      h("td", {}, user.is_active ? t("userActive") : t("userDisabled")),
      h(
        "td",
        { class: "user-actions" },
        h(
          "button",
          { type: "button", class: "btn btn-small", dataset: { editUser: user.username }, "aria-expanded": String(editing) },
          t("edit"),
        ),
      ),
    );
    if (!editing) return [row];
    const id = (name) => `user-${name}`;
    const form = h(
      "form",
      { class: "user-form", id: "user-edit-form", dataset: { username: user.username }, novalidate: true },
      h("label", { for: id("name") }, t("displayName")),
      h("input", { id: id("name"), name: "display_name", value: user.display_name, maxlength: "200" }),
      h("label", { for: id("role") }, t("role")),
      h("select", { id: id("role"), name: "role" }, roleOptions(user.role)),
      h("label", { for: id("extension") }, t("userPhone")),
      h("input", { id: id("extension"), name: "extension", value: user.extension || "", inputmode: "numeric", maxlength: "10" }),
      h("label", { for: id("tz") }, t("timeZone")),
      h("input", { id: id("tz"), name: "time_zone", value: user.time_zone || "", list: "time-zones", placeholder: t("officeTimeZone") }),
      h(
        "div",
        { class: "field-check" },
        h("input", { id: id("active"), name: "is_active", type: "checkbox", checked: user.is_active }),
        h("label", { for: id("active") }, t("userActive")),
      ),
      h("div", { class: "form-actions" },
        h("button", { type: "submit", class: "btn btn-primary btn-small" }, t("save")),
        h("button", { type: "button", class: "btn btn-small", dataset: { cancelEdit: "1" } }, t("cancel")),
      ),
      h("fieldset", { class: "password-reset" },
        h("legend", {}, t("newPassword")),
        h("label", { class: "visually-hidden", for: id("password") }, t("newPassword")),
        h("input", { id: id("password"), name: "password", type: "password", autocomplete: "new-password", minlength: "8" }),
        h("button", { type: "button", class: "btn btn-small", dataset: { setPassword: user.username } }, t("setPassword")),
        h("button", { type: "button", class: "btn btn-small", dataset: { revokeTokens: user.username } }, t("revokeTokens")),
      ),
    );
    return [row, h("tr", { class: "user-edit-row" }, h("td", { colspan: "7" }, form))];
  }

  function render() {
    const rows = $("users-rows");
    ctx.replaceKeepingFocus(rows, () => rows.replaceChildren(...page.users.flatMap(userRow)));
    setText($("users-error"), page.error ? t("usersLoadFailed", { message: page.error }) : "");
    const result = $("users-result");
    result.dataset.kind = page.message?.kind || "";
    setText(result, page.message ? t(page.message.key, page.message.params) : "");
    const created = $("users-created");
    show(created, Boolean(page.created));
    if (page.created) {
      created.replaceChildren(
        h("strong", {}, t("userCreated", { name: page.created.username })),
        " ",
        t("tokenOnce"),
        " ",
        h("code", { id: "users-created-token" }, page.created.token),
      );
    }
  }

  function extensionOrNull(value) {
    const text = value.trim();
    return text ? text : null;
  }

  // `ok`: the message a success shows; null when something else says it.
  async function act(run, ok) {
    try {
      const result = await run();
      page.message = ok ? { kind: "ok", key: ok.key, params: ok.params(result) } : null;
      return result;
    } catch (e) {
      page.message = { kind: "error", key: "userSaveFailed", params: { message: e.message } };
      return null;
    } finally {
      render();
    }
  }

  async function saveEdit(form) {
    const username = form.dataset.username;
    const body = {
      display_name: form.elements.display_name.value.trim(),
      role: form.elements.role.value,
      extension: extensionOrNull(form.elements.extension.value),
      time_zone: form.elements.time_zone.value.trim() || null,
      is_active: form.elements.is_active.checked,
    };
    if (body.time_zone && !isTimeZone(body.time_zone)) {
      page.message = { kind: "error", key: "badTimeZone", params: { zone: body.time_zone } };
      render();
      return;
    }
    const saved = await act(
      () => ctx.api("PATCH", `/api/users/${encodeURIComponent(username)}`, body),
      { key: "userSaved", params: (user) => ({ name: user.username }) },
    );
    if (saved) {
      page.users = page.users.map((user) => (user.username === username ? saved : user));
      page.editing = null;
      render();
    }
  }

  async function addUser(form) {
    const body = {
      username: form.elements.username.value.trim(),
      display_name: form.elements.display_name.value.trim(),
      role: form.elements.role.value,
      extension: extensionOrNull(form.elements.extension.value),
    };
    const password = form.elements.password.value;
    if (password) body.password = password;
    const created = await act(() => ctx.api("POST", "/api/users", body), null); // see users-created
    if (created) {
      page.created = { username: created.user.username, token: created.token };
      page.users = [...page.users, created.user].sort((a, b) => a.username.localeCompare(b.username));
      form.reset();
      render();
    }
  }

  function onClick(event) {
    const target = event.target instanceof Element ? event.target : null;
    if (!target) return;
    const edit = target.closest("button[data-edit-user]");
    if (edit) {
      page.editing = page.editing === edit.dataset.editUser ? null : edit.dataset.editUser;
      page.message = null;
      render();
      return;
    }
    if (target.closest("button[data-cancel-edit]")) {
      page.editing = null;
      render();
      return;
    }
    const reset = target.closest("button[data-set-password]");
    if (reset) {
      const username = reset.dataset.setPassword;
      const password = $("user-password").value;
      act(
        () => ctx.api("PUT", `/api/users/${encodeURIComponent(username)}/password`, { password }),
        { key: "passwordSet", params: (answer) => ({ name: username, sessions: answer.sessions_ended }) },
      );
      return;
    }
    const revoke = target.closest("button[data-revoke-tokens]");
    if (revoke) {
      const username = revoke.dataset.revokeTokens;
      act(() => ctx.api("DELETE", `/api/users/${encodeURIComponent(username)}/tokens`), {
        key: "tokensRevoked",
        params: (answer) => ({ name: username, count: answer.revoked }),
      });
    }
  }

  function bind() {
    $("users-view").addEventListener("click", onClick);
    $("users-view").addEventListener("submit", (event) => {
      event.preventDefault();
      if (event.target.id === "user-edit-form") saveEdit(event.target);
      if (event.target.id === "user-add-form") addUser(event.target);
    });
    $("user-add-role").replaceChildren(...roleOptions("operator"));
    $("time-zones").replaceChildren(...zones().map((zone) => h("option", { value: zone })));
  }

  bind();

  return {
    shown() {
      page.created = null; // a token is shown once: not again on coming back
      page.message = null;
      load();
    },
    render() {
      $("user-add-role").replaceChildren(...roleOptions($("user-add-role").value || "operator"));
      if (page.loaded) render();
    },
    reset() {
      Object.assign(page, { users: [], loaded: false, error: null, editing: null, message: null, created: null });
      $("users-rows").replaceChildren();
      show($("users-created"), false);
    },
  };
}

export function createSettingsPage(ctx) {
  const { setText } = ctx;
  const $ = (id) => document.getElementById(id);
  let message = null;

  function render() {
    const me = ctx.me();
    $("settings-tz").value = me?.time_zone || "";
    $("settings-tz").placeholder = t("officeTimeZoneIs", { zone: ctx.office()?.time_zone || "—" });
    $("settings-now").textContent = t("settingsNow", { time: formatDateTime(new Date().toISOString()) });
    const result = $("settings-result");
    result.dataset.kind = message?.kind || "";
    setText(result, message ? t(message.key, message.params) : "");
  }

  async function save(event) {
    event.preventDefault();
    const zone = $("settings-tz").value.trim() || null;
    if (zone && !isTimeZone(zone)) {
      message = { kind: "error", key: "badTimeZone", params: { zone } };
      render();
      return;
    }
    try {
      const me = await ctx.api("PATCH", "/api/me", { time_zone: zone });
      ctx.setMe(me);
      message = { kind: "ok", key: "settingsSaved", params: {} };
    } catch (e) {
      message = { kind: "error", key: "userSaveFailed", params: { message: e.message } };
    }
    render();
  }

  $("settings-form").addEventListener("submit", save);

  return {
    shown() {
      message = null;
      render();
    },
    render,
    reset() {
      message = null;
    },
  };
}
