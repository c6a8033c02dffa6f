// The faxes page (#faxes): the inbox and outbox (status, pages, client, a thumbnail to
// open the PDF) and the send form (a number, files dropped or chosen, the job's progress
// live). Everyone signed in has it; the service decides which faxes each one sees.
// Files are fetched with the token (never in a URL) and shown through blob: URLs.

import { formatDateTime } from "./format.js";
import { t } from "./i18n.js";

const PAGE = 100;
export const FAX_TO_KEY = "cti.faxTo"; // the number a client card asks the send form to fill
const FINAL = new Set(["done", "failed", "cancelled", "received", "missing"]);

export function createFaxesPage(ctx) {
  const { h, show, setText } = ctx;
  const $ = (id) => document.getElementById(id);
  const page = { box: "in", faxes: [], loaded: false, error: null, message: null, sending: false, token: 0 };
  const thumbnails = new Map(); // fax id -> blob: URL
  let reload = null;

  async function load() {
    const token = ++page.token;
    try {
      const params = new URLSearchParams({ direction: page.box, limit: String(PAGE) });
      const status = $("faxes-status").value;
      const search = $("faxes-search").value.trim();
      if (status) params.set("status", status);
      if (search) params.set("q", search);
      const data = await ctx.api("GET", `/api/faxes?${params}`);
      if (token !== page.token) return;
      page.faxes = data.faxes || [];
      page.error = null;
    } catch (e) {
      if (token !== page.token) return;
      page.error = e.message;
    }
    page.loaded = true;
    render();
  }

  function statusLabel(status) {
    const key = `faxStatus_${status}`;
    const text = t(key);
    return text === key ? status : text;
  }

  async function thumbnail(fax, img) {
    if (!fax.files?.thumbnail) return;
    let url = thumbnails.get(fax.id);
    if (!url) {
      try {
        const response = await ctx.fetchAuthorized(fax.files.thumbnail);
        url = URL.createObjectURL(await response.blob());
        thumbnails.set(fax.id, url);
      } catch {
        return;
      }
    }
    img.src = url;
  }

  async function openPdf(fax) {
    try {
      const response = await ctx.fetchAuthorized(fax.files.pdf);
      const url = URL.createObjectURL(await response.blob());
      window.open(url, "_blank", "noopener");
      setTimeout(() => URL.revokeObjectURL(url), 60_000);
    } catch (e) {
      page.message = { kind: "error", text: e.message };
      render();
    }
  }

  function faxRow(fax) {
    const img = h("img", { class: "fax-thumb", alt: t("faxPreview", { id: fax.id }), width: 60, height: 85 });
    thumbnail(fax, img);
    const who = fax.client
      ? h("span", { class: "fax-client" }, fax.client.name)
      : h("span", { class: "muted" }, fax.remote_station || "—");
    return h(
      "tr",
      { class: `fax-row fax-${fax.status}`, dataset: { faxId: String(fax.id), status: fax.status } },
      h("td", {}, fax.files?.thumbnail ? img : h("span", { class: "muted" }, "—")),
      h("td", {}, h("time", { datetime: fax.at }, formatDateTime(fax.at))),
      h("td", { class: "phone-text" }, fax.number ? ctx.formatNumber(fax.number) : "—"),
      h("td", {}, who),
      h("td", { class: "num" }, fax.pages ?? "—"),
      h(
        "td",
        { class: "fax-status" },
        statusLabel(fax.status),
        fax.error ? h("span", { class: "fax-error" }, ` · ${fax.error}`) : null,
      ),
      h(
        "td",
        { class: "fax-actions" },
        fax.files?.pdf
          ? h(
              "button",
              { type: "button", class: "btn btn-small", dataset: { faxPdf: String(fax.id), focusKey: `pdf-${fax.id}` } },
              t("faxOpenPdf"),
            )
          : null,
        fax.direction === "out" && (fax.status === "failed" || fax.status === "cancelled")
          ? h("button", { type: "button", class: "btn btn-small", dataset: { faxRetry: String(fax.id) } }, t("faxRetry"))
          : null,
        fax.direction === "out" && (fax.status === "queued" || fax.status === "requeued")
          ? h("button", { type: "button", class: "btn btn-small btn-quiet", dataset: { faxCancel: String(fax.id) } }, t("faxCancel"))
          : null,
      ),
    );
  }

  function render() {
    $("faxes-show-in").setAttribute("aria-pressed", String(page.box === "in"));
    $("faxes-show-out").setAttribute("aria-pressed", String(page.box === "out"));
    $("faxes-head").replaceChildren(
      h(
        "tr",
        {},
        ...["faxColPreview", "faxColTime", "faxColNumber", "faxColWho", "faxColPages", "faxColStatus", "faxColActions"].map(
          (key) => h("th", { scope: "col" }, t(key)),
        ),
      ),
    );
    const rows = $("faxes-rows");
    ctx.replaceKeepingFocus(rows, () => rows.replaceChildren(...page.faxes.map(faxRow)));
    setText($("faxes-error"), page.error || "");
    setText($("faxes-empty"), page.loaded && !page.error && !page.faxes.length ? t("faxNone") : "");
    const message = $("fax-send-status");
    message.dataset.kind = page.message?.kind || "";
    setText(message, page.message?.text || "");
    $("fax-send").disabled = page.sending;
  }

  async function send(form) {
    const data = new FormData();
    data.append("number", form.elements.number.value.trim());
    data.append("resolution", form.elements.resolution.value);
    if (form.elements.paper.value) data.append("paper", form.elements.paper.value);
    for (const file of form.elements.files.files) data.append("files", file, file.name);
    page.sending = true;
    page.message = { kind: "", text: t("faxSending") };
    render();
    try {
      const response = await ctx.fetchAuthorized("/api/faxes", { method: "POST", body: data });
      const job = await response.json();
      page.message = { kind: "ok", text: t("faxQueued", { id: job.id, pages: job.pages }) };
      form.reset();
      page.box = "out";
      load();
    } catch (e) {
      page.message = { kind: "error", text: e.message };
    }
    page.sending = false;
    render();
  }

  async function act(method, path) {
    try {
      await ctx.api(method, path);
    } catch (e) {
      page.message = { kind: "error", text: e.message };
    }
    load();
  }

  function bind() {
    $("faxes-show-in").addEventListener("click", () => {
      page.box = "in";
      load();
    });
    $("faxes-show-out").addEventListener("click", () => {
      page.box = "out";
      load();
    });
    $("faxes-refresh").addEventListener("click", load);
    $("faxes-status").addEventListener("change", load);
    let typing = null;
    $("faxes-search").addEventListener("input", () => {
      clearTimeout(typing);
      typing = setTimeout(load, 300);
    });
    $("fax-form").addEventListener("submit", (event) => {
      event.preventDefault();
      send(event.target);
    });
    const drop = $("fax-drop");
    drop.addEventListener("dragover", (event) => {
      event.preventDefault();
      drop.classList.add("dragging");
    });
    drop.addEventListener("dragleave", () => drop.classList.remove("dragging"));
    drop.addEventListener("drop", (event) => {
      event.preventDefault();
      drop.classList.remove("dragging");
      $("fax-files").files = event.dataTransfer.files;
    });
    $("faxes-rows").addEventListener("click", (event) => {
      const button = event.target.closest("button");
      if (!button) return;
      const id = Number(button.dataset.faxPdf || button.dataset.faxRetry || button.dataset.faxCancel);
      if (button.dataset.faxPdf) openPdf(page.faxes.find((f) => f.id === id));
      else if (button.dataset.faxRetry) act("POST", `/api/faxes/${id}/retry`);
      else if (button.dataset.faxCancel) act("DELETE", `/api/faxes/${id}`);
    });
  }

  bind();

  return {
    shown() {
      // "Send a fax" on a client card hands its number over.
      const number = sessionStorage.getItem(FAX_TO_KEY);
      if (number) {
        sessionStorage.removeItem(FAX_TO_KEY);
        $("fax-form").elements.number.value = number;
        $("fax-form").elements.number.focus();
      }
      load();
    },
    // fax.received / fax.status: the list on screen follows (a burst reloads once).
    changed(data) {
      if (!page.loaded) return;
      const known = page.faxes.find((f) => f.id === data?.fax_id);
      if (known && data.status && FINAL.has(known.status) && known.status === data.status) return;
      clearTimeout(reload);
      reload = setTimeout(load, 300);
    },
    render() {
      if (page.loaded) render();
    },
    reset() {
      page.token += 1;
      clearTimeout(reload);
      Object.assign(page, { box: "in", faxes: [], loaded: false, error: null, message: null, sending: false });
      for (const url of thumbnails.values()) URL.revokeObjectURL(url);
      thumbnails.clear();
      $("faxes-rows").replaceChildren();
      $("fax-form").reset();
      setText($("faxes-error"), "");
      setText($("faxes-empty"), "");
      setText($("fax-send-status"), "");
    },
  };
}
