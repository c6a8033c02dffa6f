// The clients page (#clients): find a client, see and edit it, its contacts, its calls and
// its SMS. Everyone may look; receptionists, operators, sales and supervisors may edit; a
// client's responsible manager is set by supervisors (the service says so too, and
// audits it). A number another client has as well is shown as shared: the lookup picks
// neither of them. Data only ever reaches the DOM as text.

import { formatDateTime, formatFull, formatNumber } from "./format.js";
import { FAX_TO_KEY } from "./faxes.js";
import { t } from "./i18n.js";

const EDITORS = new Set(["receptionist", "operator", "sales", "supervisor", "admin"]);
const MANAGER_SETTERS = new Set(["supervisor", "admin"]);
const PAGE = 50;
const CALLS = 20;
const SMS = 20;

export function createClientsPage(ctx) {
  const { h, show, setText } = ctx;
  const $ = (id) => document.getElementById(id);

  const page = {
    query: "",
    clients: [],
    nextAfter: null,
    loaded: false,
    error: null,
    token: 0,
    open: null, // the client shown: the service's whole record, or {new: true}
    calls: [],
    sms: [],
    message: null, // {kind, key, params}
    saving: false,
    detailToken: 0,
  };

  const role = () => ctx.me()?.role || "";
  const canEdit = () => EDITORS.has(role());
  const canSetManager = () => MANAGER_SETTERS.has(role());

  // -- the list --------------------------------------------------------------------------

  async function search(more = false) {
    const token = ++page.token;
    const params = new URLSearchParams({ q: page.query, limit: String(PAGE) });
    if (more && page.nextAfter) params.set("after", String(page.nextAfter));
    try {
      const body = await ctx.api("GET", `/api/clients?${params}`);
      if (token !== page.token) return;
      page.clients = more ? page.clients.concat(body.clients || []) : body.clients || [];
      page.nextAfter = body.next_after ?? null;
      page.error = null;
    } catch (e) {
      if (token !== page.token) return;
      page.error = e.message;
    }
    page.loaded = true;
    renderList();
  }

  function renderList() {
    const list = $("clients-list");
    ctx.replaceKeepingFocus(list, () =>
      list.replaceChildren(
        ...page.clients.map((client) =>
          h(
            "li",
            { class: "client-item", dataset: { clientId: String(client.id) } },
            h(
              "button",
              {
                type: "button",
                class: "link client-open",
                dataset: { openClient: String(client.id), focusKey: `client-${client.id}` },
                "aria-current": page.open?.id === client.id ? "true" : null,
              },
              client.name,
            ),
            client.is_lead ? h("span", { class: "tag" }, t("clientLead")) : null,
            h(
              "span",
              { class: "muted client-line" },
              [
                client.kind === "person" ? t("kindPerson") : t("kindCompany"),
                ...(client.phones || []).slice(0, 2).map((p) => formatNumber(p.number)),
                client.manager ? t("managerOf", { name: client.manager.name }) : null,
              ]
                .filter(Boolean)
                .join(" · "),
            ),
          ),
        ),
      ),
    );
    setText($("clients-error"), page.error ? t("clientsLoadFailed", { message: page.error }) : "");
    setText(
      $("clients-empty"),
      page.loaded && !page.error && page.clients.length === 0 ? t("clientsNone") : "",
    );
    show($("clients-more"), Boolean(page.nextAfter));
    show($("clients-new"), canEdit());
  }

  // -- one client ------------------------------------------------------------------------

  async function openClient(id) {
    const token = ++page.detailToken;
    page.message = null;
    try {
      const client = await ctx.api("GET", `/api/clients/${id}`);
      if (token !== page.detailToken) return;
      page.open = client;
      page.calls = [];
      page.sms = [];
      renderDetail();
      renderList();
      loadActivity(client, token);
    } catch (e) {
      page.message = { kind: "error", key: "clientLoadFailed", params: { message: e.message } };
      renderDetail();
    }
  }

  async function loadActivity(client, token) {
    const numbers = [
      ...(client.phones || []),
      ...(client.contacts || []).flatMap((contact) => contact.phones || []),
    ].map((phone) => phone.number);
    const calls = ctx
      .api("GET", `/api/calls?client_id=${client.id}&limit=${CALLS}`)
      .then((body) => body.calls || [])
      .catch(() => []);
    const sms = Promise.all(
      [...new Set(numbers)].slice(0, 5).map((number) =>
        ctx
          .api("GET", `/api/sms?${new URLSearchParams({ number, limit: String(SMS) })}`)
          .then((body) => body.messages || [])
          .catch(() => []),
      ),
    ).then((lists) =>
      lists.flat().sort((a, b) => String(b.created_at).localeCompare(String(a.created_at))),
    );
    const [foundCalls, foundSms] = await Promise.all([calls, sms]);
    if (token !== page.detailToken) return;
    page.calls = foundCalls;
    page.sms = foundSms.slice(0, SMS);
    renderActivity();
  }

  function newClient() {
    page.detailToken += 1;
    page.open = { new: true, name: "", kind: "company", phones: [], contacts: [], tags: [] };
    page.message = null;
    page.calls = [];
    page.sms = [];
    renderDetail();
    $("client-name")?.focus();
  }

  function phoneRow(phone, index) {
    const id = `client-phone-${index}`;
    return h(
      "div",
      { class: "phone-row", dataset: { index: String(index) } },
      h("label", { class: "visually-hidden", for: id }, t("phoneNumber")),
      h("input", {
        id,
        name: "phone",
        type: "tel",
        value: phone.number ? formatNumber(phone.number) : "",
        maxlength: "60",
        placeholder: t("phoneNumber"),
        disabled: !canEdit(),
      }),
      h("label", { class: "visually-hidden", for: `${id}-label` }, t("phoneLabel")),
      h("input", {
        id: `${id}-label`,
        name: "phone_label",
        value: phone.label || "",
        maxlength: "40",
        placeholder: t("phoneLabel"),
        disabled: !canEdit(),
      }),
      canEdit()
        ? h(
            "button",
            { type: "button", class: "btn btn-small btn-quiet", dataset: { removePhone: String(index) } },
            t("remove"),
          )
        : null,
    );
  }

  function managerOptions(client) {
    const names = ctx.names();
    const chosen = client.manager?.extension || "";
    const extensions = [...names.keys()].filter((ext) => /^\d+$/.test(ext)).sort((a, b) => a - b);
    if (chosen && !extensions.includes(chosen)) extensions.unshift(chosen);
    return [
      h("option", { value: "" }, t("noManager")),
      ...extensions.map((ext) =>
        h("option", { value: ext, selected: ext === chosen }, `${ext} · ${names.get(ext) || client.manager?.name || ""}`),
      ),
    ];
  }

  function renderShared(client) {
    const shared = client.shared_numbers || [];
    if (shared.length === 0) return null;
    return h(
      "div",
      { class: "warning", role: "status", id: "client-shared" },
      h("strong", {}, t("sharedNumbersTitle")),
      h(
        "ul",
        {},
        shared.map((one) =>
          h(
            "li",
            {},
            `${formatNumber(one.number)}: `,
            one.clients
              .filter((other) => other.id !== client.id)
              .map((other) => other.name)
              .join(", "),
          ),
        ),
      ),
    );
  }

  function renderDetail() {
    const box = $("client-detail");
    const client = page.open;
    show(box, Boolean(client) || Boolean(page.message));
    if (!client) {
      box.replaceChildren(renderMessage());
      return;
    }
    const editable = canEdit();
    const form = h(
      "form",
      { id: "client-form", class: "client-form", novalidate: true },
      h("h3", { id: "client-title" }, client.new ? t("clientNew") : client.name),
      renderShared(client),
      h("label", { for: "client-name" }, t("clientName")),
      h("input", { id: "client-name", name: "name", value: client.name || "", maxlength: "200", required: true, disabled: !editable }),
      h("label", { for: "client-kind" }, t("clientKind")),
      h(
        "select",
        { id: "client-kind", name: "kind", disabled: !editable },
        h("option", { value: "company", selected: client.kind !== "person" }, t("kindCompany")),
        h("option", { value: "person", selected: client.kind === "person" }, t("kindPerson")),
      ),
      h("label", { for: "client-manager" }, t("manager")),
      h(
        "select",
        {
          id: "client-manager",
          name: "manager",
          disabled: !editable || !canSetManager(),
          "aria-describedby": canSetManager() ? null : "client-manager-note",
        },
        managerOptions(client),
      ),
      canSetManager() ? null : h("p", { class: "note", id: "client-manager-note" }, t("managerSetBySupervisor")),
      h("label", { for: "client-tags" }, t("clientTags")),
      h("input", { id: "client-tags", name: "tags", value: (client.tags || []).join(", "), disabled: !editable }),
      h("label", { for: "client-notes" }, t("clientNotes")),
      h("textarea", { id: "client-notes", name: "notes", rows: "2", maxlength: "2000", disabled: !editable }, client.notes || ""),
      h("fieldset", { class: "phones" }, h("legend", {}, t("clientPhones")), (client.phones || []).map(phoneRow)),
      editable
        ? h("button", { type: "button", class: "btn btn-small", id: "client-add-phone" }, t("addPhone"))
        : null,
      editable
        ? h(
            "div",
            { class: "form-actions" },
            h("button", { type: "submit", class: "btn btn-primary", id: "client-save", disabled: page.saving }, page.saving ? t("saving") : t("save")),
            client.new
              ? null
              : MANAGER_SETTERS.has(role())
                ? h("button", { type: "button", class: "btn", id: "client-delete" }, t("deleteClient"))
                : null,
          )
        : null,
      renderMessage(),
    );
    const sections = client.new
      ? []
      : [renderContacts(client), renderTasks(client), h("section", { id: "client-activity", class: "client-activity" })];
    box.replaceChildren(form, ...sections);
    if (!client.new) renderActivity();
  }

  function renderMessage() {
    const message = page.message;
    if (!message) return h("p", { class: "form-result", id: "client-result", role: "status", hidden: true });
    return h(
      "p",
      { class: `form-result result-${message.kind}`, id: "client-result", role: message.kind === "error" ? "alert" : "status" },
      t(message.key, message.params),
    );
  }

  function renderContacts(client) {
    const editable = canEdit();
    return h(
      "section",
      { class: "contacts", id: "client-contacts" },
      h("h3", {}, t("contacts")),
      (client.contacts || []).length === 0 ? h("p", { class: "muted" }, t("noContacts")) : null,
      h(
        "ul",
        {},
        (client.contacts || []).map((contact) =>
          h(
            "li",
            { class: "contact-item", dataset: { contactId: String(contact.id) } },
            h("strong", {}, contact.name),
            contact.position ? h("span", { class: "muted" }, ` · ${contact.position}`) : null,
            contact.email ? h("span", { class: "muted" }, ` · ${contact.email}`) : null,
            (contact.phones || []).map((phone) => [" ", ctx.phoneButton(phone.number, formatNumber(phone.number), `contact-${contact.id}-${phone.number}`)]),
            editable
              ? h("button", { type: "button", class: "btn btn-small btn-quiet", dataset: { deleteContact: String(contact.id) } }, t("remove"))
              : null,
          ),
        ),
      ),
      editable
        ? h(
            "form",
            { id: "contact-form", class: "inline-form contact-form", novalidate: true },
            h("label", { class: "visually-hidden", for: "contact-name" }, t("contactName")),
            h("input", { id: "contact-name", name: "name", placeholder: t("contactName"), maxlength: "200", required: true }),
            h("label", { class: "visually-hidden", for: "contact-position" }, t("contactPosition")),
            h("input", { id: "contact-position", name: "position", placeholder: t("contactPosition"), maxlength: "200" }),
            h("label", { class: "visually-hidden", for: "contact-phone" }, t("phoneNumber")),
            h("input", { id: "contact-phone", name: "phone", type: "tel", placeholder: t("phoneNumber"), maxlength: "60" }),
            h("button", { type: "submit", class: "btn btn-small" }, t("addContact")),
          )
        : null,
    );
  }

  function renderTasks(client) {
    const tasks = client.open_tasks || [];
    if (tasks.length === 0) return h("section", { class: "client-tasks" });
    return h(
      "section",
      { class: "client-tasks" },
      h("h3", {}, t("tasks")),
      h(
        "ul",
        {},
        tasks.map((task) =>
          h("li", {}, ctx.phoneButton(task.number, formatNumber(task.number), `client-task-${task.id}`), h("span", { class: "muted" }, ` ${t("taskLine", { count: task.missed_calls ?? 1 })} · ${formatDateTime(task.created_at)}`)),
        ),
      ),
    );
  }

  function renderActivity() {
    const box = $("client-activity");
    if (!box) return;
    const calls = page.calls.map((call) =>
      h(
        "li",
        { class: `call-row${call.missed ? " call-missed" : ""}`, dataset: { callId: call.id } },
        h("time", { datetime: call.started_at, title: formatFull(call.started_at) }, formatDateTime(call.started_at)),
        h("span", { class: "dir" }, ctx.directionLabel(call.direction)),
        ctx.phoneButton(call.external_number, formatNumber(call.external_number), `client-call-${call.id}`),
        h("span", { class: "call-outcome" }, [ctx.outcomeLabel(call), call.missed ? t("missed") : null, call.fax ? t("faxPages", { pages: call.fax.pages ?? 0 }) : null].filter(Boolean).join(" · ")),
      ),
    );
    const sms = page.sms.map((message) =>
      h(
        "li",
        { class: `sms-row sms-${message.direction === "in" ? "in" : "out"}`, dataset: { smsId: message.id } },
        h("time", { datetime: message.created_at, title: formatFull(message.created_at) }, formatDateTime(message.created_at)),
        h("span", { class: "dir" }, message.direction === "in" ? t("smsIncoming") : t("smsOutgoing")),
        h("span", { class: "muted" }, ` ${formatNumber(message.number)} `),
        h("span", { class: "sms-text", dir: "auto" }, message.text ?? ""),
      ),
    );
    box.replaceChildren(
      h("h3", {}, t("clientCalls")),
      calls.length ? h("ol", { class: "call-list", id: "client-calls" }, calls) : h("p", { class: "muted" }, t("noRecentCalls")),
      h("h3", {}, t("clientSms")),
      sms.length ? h("ol", { class: "sms-list", id: "client-sms" }, sms) : h("p", { class: "muted" }, t("noMessages")),
      faxButton(),
    );
  }

  // "Send a fax": the Faxes page's form, with the client's first number in it.
  function faxButton() {
    const number = (page.open?.phones || [])[0]?.number;
    if (!number) return null;
    const button = h("button", { type: "button", class: "btn btn-small", id: "client-fax" }, t("faxTo"));
    button.addEventListener("click", () => {
      sessionStorage.setItem(FAX_TO_KEY, number);
      window.location.hash = "#faxes";
    });
    return h("p", {}, button);
  }

  // -- saving ------------------------------------------------------------------------------

  function formBody() {
    const form = $("client-form");
    const phones = [...form.querySelectorAll(".phone-row")]
      .map((row) => ({
        number: row.querySelector('[name="phone"]').value.trim(),
        label: row.querySelector('[name="phone_label"]').value.trim(),
      }))
      .filter((phone) => phone.number);
    const body = {
      name: form.elements.name.value.trim(),
      kind: form.elements.kind.value,
      tags: form.elements.tags.value.split(",").map((tag) => tag.trim()).filter(Boolean),
      notes: form.elements.notes.value,
      phones,
    };
    // Only a supervisor's form says who the manager is; anyone else's leaves it as it is.
    if (canSetManager()) body.manager_extension = form.elements.manager.value || null;
    return body;
  }

  async function save(event) {
    event.preventDefault();
    const client = page.open;
    if (!client || page.saving) return;
    const body = formBody();
    if (!body.name) {
      page.message = { kind: "error", key: "clientNameMissing" };
      renderDetail();
      $("client-name").focus();
      return;
    }
    page.saving = true;
    renderDetail();
    try {
      const saved = client.new
        ? await ctx.api("POST", "/api/clients", body)
        : await ctx.api("PUT", `/api/clients/${client.id}`, body);
      page.open = saved;
      page.message = {
        kind: (saved.shared_numbers || []).length ? "warn" : "ok",
        key: (saved.shared_numbers || []).length ? "clientSavedShared" : "clientSaved",
        params: { name: saved.name },
      };
      if (!page.clients.some((one) => one.id === saved.id)) page.clients.unshift(saved);
      else page.clients = page.clients.map((one) => (one.id === saved.id ? saved : one));
    } catch (e) {
      page.message = { kind: "error", key: "clientSaveFailed", params: { message: e.message } };
    } finally {
      page.saving = false;
    }
    renderDetail();
    renderList();
    if (page.open && !page.open.new) loadActivity(page.open, page.detailToken);
  }

  async function change(method, path, body, key) {
    try {
      page.open = await ctx.api(method, path, body);
      page.message = { kind: "ok", key, params: {} };
    } catch (e) {
      page.message = { kind: "error", key: "clientSaveFailed", params: { message: e.message } };
    }
    renderDetail();
  }

  async function deleteClient() {
    const client = page.open;
    if (!client?.id || !window.confirm(t("deleteClientConfirm", { name: client.name }))) return;
    try {
      await ctx.api("DELETE", `/api/clients/${client.id}`);
      page.clients = page.clients.filter((one) => one.id !== client.id);
      page.open = null;
      page.message = { kind: "ok", key: "clientDeleted", params: { name: client.name } };
    } catch (e) {
      page.message = { kind: "error", key: "clientSaveFailed", params: { message: e.message } };
    }
    renderDetail();
    renderList();
  }

  function onClick(event) {
    const target = event.target instanceof Element ? event.target : null;
    if (!target) return;
    const open = target.closest("button[data-open-client]");
    if (open) return openClient(Number(open.dataset.openClient));
    if (target.closest("#clients-new")) return newClient();
    if (target.closest("#clients-more")) return search(true);
    if (target.closest("#client-add-phone")) {
      page.open = { ...page.open, ...formBody(), phones: [...formBody().phones, { number: "", label: "" }] };
      renderDetail();
      $(`client-phone-${page.open.phones.length - 1}`)?.focus();
      return;
    }
    const remove = target.closest("button[data-remove-phone]");
    if (remove) {
      const phones = formBody().phones.filter((_, i) => i !== Number(remove.dataset.removePhone));
      page.open = { ...page.open, ...formBody(), phones };
      renderDetail();
      return;
    }
    if (target.closest("#client-delete")) return deleteClient();
    const contact = target.closest("button[data-delete-contact]");
    if (contact) change("DELETE", `/api/contacts/${contact.dataset.deleteContact}`, undefined, "contactRemoved");
  }

  function onSubmit(event) {
    if (event.target.id === "client-form") return save(event);
    if (event.target.id === "contact-form") {
      event.preventDefault();
      const form = event.target;
      const name = form.elements.name.value.trim();
      if (!name) return;
      const phone = form.elements.phone.value.trim();
      change(
        "POST",
        `/api/clients/${page.open.id}/contacts`,
        { name, position: form.elements.position.value.trim(), phones: phone ? [{ number: phone }] : [] },
        "contactAdded",
      );
    }
  }

  function bind() {
    $("clients-search-form").addEventListener("submit", (event) => {
      event.preventDefault();
      page.query = $("clients-search").value.trim();
      search(false);
    });
    $("clients-view").addEventListener("click", onClick);
    $("clients-view").addEventListener("submit", onSubmit);
  }

  bind();

  return {
    shown() {
      if (!page.loaded) search(false);
    },
    open(id) {
      openClient(id);
    },
    render() {
      if (page.loaded) renderList();
      renderDetail();
    },
    reset() {
      Object.assign(page, { query: "", clients: [], nextAfter: null, loaded: false, error: null, open: null, calls: [], sms: [], message: null });
      page.token += 1;
      page.detailToken += 1;
      $("clients-search").value = "";
      $("clients-list").replaceChildren();
      $("client-detail").replaceChildren();
      show($("client-detail"), false);
    },
  };
}
