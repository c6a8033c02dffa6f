// Every string the page shows, in English and Russian. t("key", {name: ...}) fills in
// {name}; elements with data-i18n="key" (and data-i18n-placeholder/-title) are filled
// by translatePage(). The chosen language is kept in localStorage.

export const DICTIONARIES = {
  en: {
    languageName: "English",
    switchLanguage: "Switch the language to {name}",
    appTitle: "CTI desktop",
    skipToContent: "Skip to content",
    loginTitle: "Sign in",
    username: "User name",
    password: "Password",
    signIn: "Sign in",
    signingIn: "Signing in…",
    loginFailed: "Wrong user name or password.",
    loginMissing: "Enter your user name and password.",
    sessionExpired: "Your session has ended. Please sign in again.",
    networkError: "The service does not answer. Try again in a moment.",
    logout: "Log out",
    roleOperator: "operator",
    roleReceptionist: "receptionist",
    roleSales: "sales",
    roleSupervisor: "supervisor",
    roleAdmin: "administrator",
    extensionShort: "ext. {ext}",
    feedLive: "Live",
    feedConnecting: "Connecting…",
    feedReconnecting: "Reconnecting…",
    feedOffline: "Offline",
    linkDown: "{kind} {name} is not connected",
    linkKindPbx: "Phone system",
    linkKindModem: "GSM modem",
    enableNotifications: "Enable notifications",
    notificationsBlocked: "Notifications are blocked in this browser.",
    notifyTitle: "Incoming call",
    incomingCalls: "Calls",
    callsInProgress: "Ringing and active calls",
    noCalls: "No calls right now.",
    stateRinging: "Ringing",
    ringingAt: "Ringing: {exts}",
    answeredByYou: "Answered by you",
    answeredBy: "Answered by {ext}",
    stateEnded: "Ended",
    directionInbound: "Incoming",
    directionOutbound: "Outgoing",
    directionInternal: "Internal",
    hiddenNumber: "Hidden number",
    callerName: "Caller ID name",
    client: "Client",
    contact: "Contact",
    manager: "Manager",
    lookupPending: "Looking up the caller…",
    lookupUnknown: "Unknown number: not in the directory.",
    lookupUnavailable: "The directory could not be asked.",
    kindCompany: "company",
    kindPerson: "person",
    openInCrm: "Open in CRM",
    noManager: "No responsible manager.",
    history: "Recent interactions",
    noHistory: "No earlier interactions.",
    historyCall: "call",
    historySms: "SMS",
    historyFax: "fax",
    tasks: "Callback tasks",
    taskLine: "{count} missed",
    taskAssignee: "for {ext}",
    transferTo: "Transfer to {name} ({ext})",
    transferring: "Transferring…",
    transferred: "Sent to {ext}.",
    transferFailed: "Transfer failed: {message}",
    transferUnavailable: "Transfer is not available.",
    dialTitle: "Dial a number",
    phoneNumber: "Phone number",
    call: "Call",
    callNumber: "Call {number}",
    calling: "Calling {number}… pick up your phone.",
    dialConnected: "Your phone answered: dialling {number}.",
    dialFailed: "Could not call {number}: {reason}",
    dialNotAllowed: "Click-to-dial is not available for you.",
    colleagues: "Colleagues",
    noLines: "No phones known yet.",
    you: "you",
    lineIdle: "free",
    lineRinging: "ringing",
    lineBusy: "busy",
    lineUnavailable: "unavailable",
    lineUnknown: "unknown",
    myCalls: "My calls",
    refresh: "Refresh",
    recentCalls: "Recent",
    missedCalls: "Missed",
    noRecentCalls: "No calls yet.",
    noMissedCalls: "No missed calls.",
    callsLoadFailed: "Could not load the calls: {message}",
    outcomeAnswered: "answered",
    outcomeNo_answer: "not answered",
    outcomeAbandoned: "caller hung up",
    outcomeBusy: "busy",
    outcomeFailed: "failed",
    outcomeInProgress: "in progress",
    missed: "missed",
    smsTitle: "Send SMS",
    smsNotConfigured: "SMS is not configured.",
    smsTo: "To",
    smsText: "Message",
    smsSend: "Send",
    smsSending: "Sending…",
    smsQueued: "The SMS is on its way.",
    smsFailed: "The SMS was not sent: {message}",
    errorGeneric: "Something went wrong ({status}).",
  },
  ru: {
    languageName: "Русский",
    switchLanguage: "Переключить язык на {name}",
    appTitle: "Рабочее место оператора",
    skipToContent: "К содержимому",
    loginTitle: "Вход",
    username: "Имя пользователя",
    password: "Пароль",
    signIn: "Войти",
    signingIn: "Входим…",
    loginFailed: "Неверное имя пользователя или пароль.",
    loginMissing: "Введите имя пользователя и пароль.",
    sessionExpired: "Сеанс завершён. Войдите снова.",
    networkError: "Сервис не отвечает. Попробуйте через минуту.",
    logout: "Выйти",
    roleOperator: "оператор",
    roleReceptionist: "секретарь",
    roleSales: "продажи",
    roleSupervisor: "руководитель",
    roleAdmin: "администратор",
    extensionShort: "доб. {ext}",
    feedLive: "На связи",
    feedConnecting: "Подключение…",
    feedReconnecting: "Переподключение…",
    feedOffline: "Нет связи",
    linkDown: "{kind} {name}: нет связи",
    linkKindPbx: "АТС",
    linkKindModem: "GSM-модем",
    enableNotifications: "Включить уведомления",
    notificationsBlocked: "Уведомления запрещены в этом браузере.",
    notifyTitle: "Входящий звонок",
    incomingCalls: "Звонки",
    callsInProgress: "Входящие и текущие звонки",
    noCalls: "Сейчас звонков нет.",
    stateRinging: "Звонит",
    ringingAt: "Звонит у: {exts}",
    answeredByYou: "Вы ответили",
    answeredBy: "Ответил {ext}",
    stateEnded: "Завершён",
    directionInbound: "Входящий",
    directionOutbound: "Исходящий",
    directionInternal: "Внутренний",
    hiddenNumber: "Номер скрыт",
    callerName: "Имя из АТС",
    client: "Клиент",
    contact: "Контакт",
    manager: "Менеджер",
    lookupPending: "Ищем звонящего…",
    lookupUnknown: "Неизвестный номер: его нет в справочнике.",
    lookupUnavailable: "Справочник недоступен.",
    kindCompany: "компания",
    kindPerson: "частное лицо",
    openInCrm: "Открыть в CRM",
    noManager: "Ответственный менеджер не назначен.",
    history: "Последние обращения",
    noHistory: "Раньше не обращался.",
    historyCall: "звонок",
    historySms: "SMS",
    historyFax: "факс",
    tasks: "Перезвонить",
    taskLine: "пропущено: {count}",
    taskAssignee: "для {ext}",
    transferTo: "Перевести на {name} ({ext})",
    transferring: "Переводим…",
    transferred: "Переведён на {ext}.",
    transferFailed: "Не удалось перевести: {message}",
    transferUnavailable: "Перевод недоступен.",
    dialTitle: "Набрать номер",
    phoneNumber: "Номер телефона",
    call: "Позвонить",
    callNumber: "Позвонить на {number}",
    calling: "Звоним на {number}… снимите трубку.",
    dialConnected: "Трубка снята: набираем {number}.",
    dialFailed: "Не удалось позвонить на {number}: {reason}",
    dialNotAllowed: "Звонки из браузера вам недоступны.",
    colleagues: "Коллеги",
    noLines: "Телефоны пока неизвестны.",
    you: "вы",
    lineIdle: "свободен",
    lineRinging: "звонит",
    lineBusy: "занят",
    lineUnavailable: "недоступен",
    lineUnknown: "неизвестно",
    myCalls: "Мои звонки",
    refresh: "Обновить",
    recentCalls: "Последние",
    missedCalls: "Пропущенные",
    noRecentCalls: "Звонков пока нет.",
    noMissedCalls: "Пропущенных нет.",
    callsLoadFailed: "Не удалось загрузить звонки: {message}",
    outcomeAnswered: "отвечен",
    outcomeNo_answer: "без ответа",
    outcomeAbandoned: "звонящий положил трубку",
    outcomeBusy: "занято",
    outcomeFailed: "ошибка",
    outcomeInProgress: "идёт",
    missed: "пропущен",
    smsTitle: "Отправить SMS",
    smsNotConfigured: "SMS не настроены.",
    smsTo: "Кому",
    smsText: "Текст",
    smsSend: "Отправить",
    smsSending: "Отправляем…",
    smsQueued: "SMS отправляется.",
    smsFailed: "SMS не отправлено: {message}",
    errorGeneric: "Что-то пошло не так ({status}).",
  },
};

export const LANGUAGES = Object.keys(DICTIONARIES);
const STORAGE_KEY = "cti.lang";

function initialLanguage() {
  let stored = null;
  try {
    stored = localStorage.getItem(STORAGE_KEY);
  } catch {
    // storage may be disabled; the browser's language decides then
  }
  if (stored && DICTIONARIES[stored]) return stored;
  const wanted = navigator.languages?.length ? navigator.languages : [navigator.language];
  for (const tag of wanted) {
    const base = String(tag || "").toLowerCase().split("-")[0];
    if (DICTIONARIES[base]) return base;
  }
  return "en";
}

let current = initialLanguage();

export function language() {
  return current;
}

export function setLanguage(lang) {
  if (!DICTIONARIES[lang]) return;
  current = lang;
  try {
    localStorage.setItem(STORAGE_KEY, lang);
  } catch {
    // not kept: fine
  }
}

export function t(key, params = {}) {
  const text = DICTIONARIES[current][key] ?? DICTIONARIES.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (whole, name) =>
    Object.hasOwn(params, name) ? String(params[name]) : whole,
  );
}

export function translatePage(root = document) {
  document.documentElement.lang = current;
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-placeholder]")) {
    el.placeholder = t(el.dataset.i18nPlaceholder);
  }
  for (const el of root.querySelectorAll("[data-i18n-title]")) el.title = t(el.dataset.i18nTitle);
  document.title = t("appTitle");
}
