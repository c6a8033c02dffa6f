// How the page shows numbers, times and durations: one way, everywhere.
//
// Phone numbers: libphonenumber-js (Google's libphonenumber metadata, loaded as
// /static/libphonenumber-min.js before this module), never by hand, for every country.
// Times: in the user's locale (see locale()) and in the user's time zone, else the
// office's (the hello says it), else the browser's.

import { language } from "./i18n.js";

const phoneLib = globalThis.libphonenumber;

let zone = null; // IANA name; null: the browser's

export function setTimeZone(name) {
  zone = name && isTimeZone(name) ? name : null;
}

export function timeZone() {
  return zone || Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
}

export function isTimeZone(name) {
  try {
    new Intl.DateTimeFormat("en", { timeZone: name });
    return true;
  } catch {
    return false;
  }
}

// The office's country (the hello's region, "RU"): how the English page writes dates.
let officeRegion = null;

export function setOfficeRegion(region) {
  officeRegion = typeof region === "string" && /^[A-Z]{2}$/.test(region) ? region : null;
}

// The Russian page: ru-RU. The English page: the browser's locale, except the bare en-US
// most browsers ship with, which in an office outside the US becomes en-GB (day first,
// 24-hour clock: 01/12/2026, 18:44) rather than 12/01/2026, 06:44 PM.
export function locale() {
  if (language() === "ru") return "ru-RU";
  const browser = navigator.languages?.[0] || navigator.language || "en-GB";
  const american = browser === "en-US" || browser === "en";
  return american && officeRegion && officeRegion !== "US" ? "en-GB" : browser;
}

// -- phone numbers --------------------------------------------------------------------

// An E.164 number as people read it (+7 812 555 01 11); anything else as it is.
export function formatNumber(number) {
  if (!number || typeof number !== "string") return "";
  if (!number.startsWith("+") || !phoneLib) return number;
  try {
    return phoneLib.parsePhoneNumber(number).formatInternational();
  } catch {
    return number;
  }
}

// -- times -----------------------------------------------------------------------------

function dateOf(iso) {
  const when = new Date(iso || "");
  return Number.isNaN(when.getTime()) ? null : when;
}

function format(when, options) {
  return new Intl.DateTimeFormat(locale(), { timeZone: timeZone(), ...options }).format(when);
}

function sameDay(a, b) {
  const day = (when) => format(when, { year: "numeric", month: "2-digit", day: "2-digit" });
  return day(a) === day(b);
}

// Short: the time today, else the day and the time.
export function formatTime(iso) {
  const when = dateOf(iso);
  if (!when) return "";
  const time = { hour: "2-digit", minute: "2-digit" };
  return sameDay(when, new Date()) ? format(when, time) : format(when, { day: "numeric", month: "short", ...time });
}

// A table's: 01.12.2026, 18:44.
export function formatDateTime(iso) {
  const when = dateOf(iso);
  if (!when) return "";
  return format(when, {
    year: "numeric",
    month: "2-digit",
    day: "2-digit",
    hour: "2-digit",
    minute: "2-digit",
  });
}

// A tooltip's: the whole date, the time with seconds, and the zone.
export function formatFull(iso) {
  const when = dateOf(iso);
  if (!when) return "";
  return format(when, { dateStyle: "full", timeStyle: "long" });
}

export function formatDuration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(Number(seconds))) return "—";
  const total = Math.round(Number(seconds));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = String(total % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
}

export function formatPercent(rate) {
  if (rate === null || rate === undefined) return "—"; // no calls: nothing to divide
  const value = Number(rate);
  if (Number.isNaN(value)) return "—";
  return new Intl.NumberFormat(locale(), { style: "percent", maximumFractionDigits: 1 }).format(value);
}

// -- days in the user's time zone ----------------------------------------------------

// The zone's offset from UTC at an instant, in minutes (Moscow: +180).
function offsetAt(instant) {
  const parts = Object.fromEntries(
    new Intl.DateTimeFormat("en-US", {
      timeZone: timeZone(),
      hourCycle: "h23",
      year: "numeric",
      month: "2-digit",
      day: "2-digit",
      hour: "2-digit",
      minute: "2-digit",
      second: "2-digit",
    })
      .formatToParts(instant)
      .map((part) => [part.type, part.value]),
  );
  const wall = Date.UTC(parts.year, parts.month - 1, parts.day, parts.hour, parts.minute, parts.second);
  return Math.round((wall - instant.getTime()) / 60000);
}

// "YYYY-MM-DD" (an <input type=date>) -> the instant that day (plus `days`) begins in the
// user's time zone.
export function dayStart(value, days = 0) {
  const [y, m, d] = value.split("-").map(Number);
  const wall = Date.UTC(y, m - 1, d + days);
  let instant = new Date(wall - offsetAt(new Date(wall)) * 60000);
  instant = new Date(wall - offsetAt(instant) * 60000); // again, across a DST change
  return instant;
}

// Today (or `date`) as "YYYY-MM-DD" in the user's time zone.
export function dateValue(date = new Date()) {
  // en-CA writes dates as YYYY-MM-DD.
  return new Intl.DateTimeFormat("en-CA", {
    timeZone: timeZone(),
    year: "numeric",
    month: "2-digit",
    day: "2-digit",
  }).format(date);
}

// "YYYY-MM-DD" moved by `days`.
export function addDays(value, days) {
  const [y, m, d] = value.split("-").map(Number);
  return new Date(Date.UTC(y, m - 1, d + days)).toISOString().slice(0, 10);
}
