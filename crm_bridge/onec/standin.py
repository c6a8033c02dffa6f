"""A local stand-in for a 1C base's standard OData interface, written from the documented
shapes: ``$metadata``, catalogs with their contact information tabular sections,
``$filter`` (eq/ne/and/or/not, ``guid'…'``, ``cast(guid'…', 'Type')``), ``$select``,
``$orderby``, ``$top``/``$skip``, objects by reference, ``POST`` of documents and
register records, HTTP Basic in UTF-8, and 1C's error answers. Tests, the bench and
the demo run against it; docs/crm_connectors.md says what it was not checked against.

It also plays a real base's quirks: an empty ``НомерТелефона``, several numbers in one
``Представление``, partners marked for deletion, partners without a manager.
"""

from __future__ import annotations

import asyncio
import base64
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import quoteattr

from aiohttp import web

from crm_bridge.onec.names import OneCNames

NAMES = OneCNames()
CATALOG = ["Ref_Key", "DataVersion", "DeletionMark", "Description"]
SECTION = [
    "Ref_Key",
    "LineNumber",
    "Тип",
    "НомерТелефона",
    "НомерТелефонаБезКодов",
    "Представление",
]
SCHEMA: dict[str, list[str]] = {
    "Catalog_Партнеры": [
        *CATALOG,
        "НаименованиеПолное",
        "ОсновнойМенеджер_Key",
        "ЮрФизЛицо",
        "КонтактнаяИнформация",
    ],
    "Catalog_Партнеры_КонтактнаяИнформация": SECTION,
    "Catalog_КонтактныеЛицаПартнеров": [*CATALOG, "Owner_Key", "КонтактнаяИнформация"],
    "Catalog_КонтактныеЛицаПартнеров_КонтактнаяИнформация": SECTION,
    "Catalog_Контрагенты": [
        *CATALOG,
        "НаименованиеПолное",
        "Партнер_Key",
        "КонтактнаяИнформация",
    ],
    "Catalog_Контрагенты_КонтактнаяИнформация": SECTION,
    "Catalog_Пользователи": CATALOG,
    "Document_ТелефонныйЗвонок": [
        "Ref_Key",
        "DataVersion",
        "DeletionMark",
        "Number",
        "Date",
        "Posted",
        "Входящий",
        "АбонентКакСвязаться",
        "АбонентКонтакт",
        "АбонентКонтакт_Type",
        "АбонентПредставление",
        "Ответственный_Key",
        "Тема",
        "Описание",
        "Важность",
    ],
    "InformationRegister_НапоминанияПользователя": [
        "Пользователь_Key",
        "ВремяСобытия",
        "СрокНапоминания",
        "Источник",
        "Источник_Type",
        "Описание",
    ],
}
SECTIONS = {
    name.removesuffix("_КонтактнаяИнформация"): name for name in SCHEMA if "_Контакт" in name
}
REMINDER_KEY = ("Пользователь_Key", "ВремяСобытия", "Источник")
_GUID = re.compile(r"guid'([0-9a-fA-F-]{36})'")
_REFS_FIRST = re.compile(r"^\((?:Ref_Key eq guid'[0-9a-fA-F-]{36}'(?: or )?)+\)(?= and |$)")


class FilterError(ValueError):
    pass


@dataclass(frozen=True)
class Cast:
    ref: str
    type_name: str


_TOKEN = re.compile(
    r"\s*(?:(?P<guid>guid'[0-9a-fA-F-]{36}')|(?P<datetime>datetime'[0-9T:.-]+')"
    r"|(?P<string>'(?:[^']|'')*')|(?P<number>-?\d+(?:\.\d+)?)|(?P<punct>[(),])"
    r"|(?P<word>[\w/]+))",
    re.UNICODE,
)


def _tokens(text: str) -> list[tuple[str, Any]]:
    tokens: list[tuple[str, Any]] = []
    position = 0
    text = text.strip()
    while position < len(text):
        found = _TOKEN.match(text, position)
        if found is None or found.end() == position:
            raise FilterError(f"cannot read the filter at {text[position : position + 20]!r}")
        position = found.end()
        kind = found.lastgroup
        value = found.group(kind)
        if kind == "guid":
            tokens.append(("value", str(uuid.UUID(value[5:-1]))))
        elif kind == "datetime":
            tokens.append(("value", value[9:-1]))
        elif kind == "string":
            tokens.append(("value", value[1:-1].replace("''", "'")))
        elif kind == "number":
            tokens.append(("value", float(value) if "." in value else int(value)))
        elif kind == "punct":
            tokens.append((value, value))
        elif value in ("eq", "ne", "and", "or", "not", "cast"):
            tokens.append((value, value))
        elif value in ("true", "false"):
            tokens.append(("value", value == "true"))
        else:
            tokens.append(("field", value))
    return tokens


class _Filter:
    """$filter, parsed once into a predicate over a row."""

    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.at = 0
        self.test = self._or()
        if self.at != len(self.tokens):
            raise FilterError("unexpected text at the end of the filter")

    def _peek(self) -> str | None:
        return self.tokens[self.at][0] if self.at < len(self.tokens) else None

    def _take(self, kind: str) -> Any:
        if self._peek() != kind:
            raise FilterError(f"expected {kind} in the filter")
        self.at += 1
        return self.tokens[self.at - 1][1]

    def _or(self):
        left = self._and()
        while self._peek() == "or":
            self.at += 1
            right = self._and()
            left = (lambda a, b: lambda row: a(row) or b(row))(left, right)
        return left

    def _and(self):
        left = self._not()
        while self._peek() == "and":
            self.at += 1
            right = self._not()
            left = (lambda a, b: lambda row: a(row) and b(row))(left, right)
        return left

    def _not(self):
        if self._peek() == "not":
            self.at += 1
            inner = self._not()
            return lambda row: not inner(row)
        if self._peek() == "(":
            self.at += 1
            inner = self._or()
            self._take(")")
            return inner
        field = self._take("field")
        operator = self._peek()
        if operator not in ("eq", "ne"):
            raise FilterError("only eq and ne comparisons are supported")
        self.at += 1
        value = self._operand()

        def compare(row: dict[str, Any]) -> bool:
            # The stand-in keeps references in canonical form, as guid'…' literals are read.
            if isinstance(value, Cast):
                same = (
                    row.get(field) == value.ref
                    and row.get(f"{field}_Type") == f"StandardODATA.{value.type_name}"
                )
            else:
                same = row.get(field) == value
            return same if operator == "eq" else not same

        return compare

    def _operand(self) -> Any:
        if self._peek() == "cast":
            self.at += 1
            self._take("(")
            ref = self._take("value")
            self._take(",")
            type_name = self._take("value")
            self._take(")")
            return Cast(str(ref), str(type_name))
        return self._take("value")


def _error(status: int, message: str) -> web.Response:
    return web.json_response(
        {"odata.error": {"code": "-1", "message": {"lang": "ru", "value": message}}},
        status=status,
    )


class OneCStandIn:
    """The base's data (``sets``: entity set → ref → object) and its HTTP face."""

    def __init__(
        self,
        username: str = "Администратор",
        password: str = "пароль 1С",  # noqa: S107 - the stand-in's own, for tests and the demo
    ) -> None:
        self.username, self.password = username, password
        self.sets: dict[str, dict[str, dict[str, Any]]] = {
            name: {} for name in SCHEMA if name not in SECTIONS.values()
        }
        self.reminders: list[dict[str, Any]] = []
        self.schema = {name: list(fields) for name, fields in SCHEMA.items()}
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.down = False  # answer 503, as a web server in front of a stopped 1C does
        self.delay = 0.0  # seconds before each answer
        self.fail_posts = 0  # answer this many POSTs with 500
        self.lose_answers = 0  # write this many POSTs, then answer 502 (a lost answer)
        self.port = 0
        self._versions = 0
        self._cache: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
        self._runner: web.AppRunner | None = None

    # -- the data ------------------------------------------------------------------------

    def _version(self) -> str:
        self._versions += 1
        self._cache.clear()
        return base64.b64encode(self._versions.to_bytes(8, "big")).decode()

    def _store(self, entity_set: str, ref: str | None, fields: dict[str, Any]) -> str:
        ref = ref or str(uuid.uuid4())
        self.sets[entity_set][ref] = {"Ref_Key": ref, **fields, "DataVersion": self._version()}
        return ref

    @staticmethod
    def phone_rows(phones: Iterable[tuple[str, str]]) -> list[dict[str, Any]]:
        """(НомерТелефона, Представление) pairs as contact information rows."""
        return [
            {
                "LineNumber": str(n),
                "Тип": "Телефон",
                "НомерТелефона": stored,
                "НомерТелефонаБезКодов": re.sub(r"\D", "", stored)[-7:],
                "Представление": shown,
            }
            for n, (stored, shown) in enumerate(phones, 1)
        ]

    def add_user(self, name: str, ref: str | None = None) -> str:
        return self._store(
            "Catalog_Пользователи", ref, {"Description": name, "DeletionMark": False}
        )

    def add_partner(
        self,
        name: str,
        phones: Iterable[tuple[str, str]] = (),
        *,
        full_name: str = "",
        manager: str | None = None,
        person: bool = False,
        deleted: bool = False,
        ref: str | None = None,
        emails: Iterable[str] = (),
    ) -> str:
        rows = self.phone_rows(phones)
        rows += [{"LineNumber": str(len(rows) + 1), "Тип": "АдресЭлектроннойПочты",
                  "НомерТелефона": "", "НомерТелефонаБезКодов": "", "Представление": e}
                 for e in emails]  # fmt: skip
        return self._store(
            "Catalog_Партнеры",
            ref,
            {
                "Description": name,
                "НаименованиеПолное": full_name or name,
                "ОсновнойМенеджер_Key": manager or "00000000-0000-0000-0000-000000000000",
                "ЮрФизЛицо": "ЧастноеЛицо" if person else "Компания",
                "DeletionMark": deleted,
                "КонтактнаяИнформация": rows,
            },
        )

    def add_contact(
        self,
        partner: str,
        name: str,
        phones: Iterable[tuple[str, str]] = (),
        ref: str | None = None,
    ) -> str:
        return self._store(
            "Catalog_КонтактныеЛицаПартнеров",
            ref,
            {
                "Description": name,
                "Owner_Key": partner,
                "DeletionMark": False,
                "КонтактнаяИнформация": self.phone_rows(phones),
            },
        )

    def add_counterparty(
        self, name: str, partner: str | None, phones: Iterable[tuple[str, str]] = ()
    ) -> str:
        return self._store(
            "Catalog_Контрагенты",
            None,
            {
                "Description": name,
                "НаименованиеПолное": name,
                "Партнер_Key": partner or "00000000-0000-0000-0000-000000000000",
                "DeletionMark": False,
                "КонтактнаяИнформация": self.phone_rows(phones),
            },
        )

    def edit(self, entity_set: str, ref: str, **fields: Any) -> None:
        """Change an object as a 1C user would: a new DataVersion."""
        entity = self.sets[entity_set][ref]
        entity.update(fields)
        entity["DataVersion"] = self._version()

    def calls(self) -> list[dict[str, Any]]:
        return list(self.sets["Document_ТелефонныйЗвонок"].values())

    def hide(self, entity_set: str, field: str | None = None) -> None:
        """Leave an object (or one field) out of the OData composition."""
        if field is None:
            self.schema.pop(entity_set, None)
        else:
            self.schema[entity_set] = [f for f in self.schema[entity_set] if f != field]

    def _rows(self, entity_set: str) -> list[dict[str, Any]]:
        if entity_set in SECTIONS.values():
            owner = entity_set.removesuffix("_КонтактнаяИнформация")
            return [
                {"Ref_Key": ref, **row}
                for ref, entity in self.sets[owner].items()
                for row in entity.get("КонтактнаяИнформация", ())
            ]
        if entity_set == "InformationRegister_НапоминанияПользователя":
            return self.reminders
        return list(self.sets[entity_set].values())

    # -- the HTTP face -------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._gate])
        app.router.add_get("/{base}/odata/standard.odata/$metadata", self.metadata)
        app.router.add_get("/{base}/odata/standard.odata/{resource}", self.get)
        app.router.add_post("/{base}/odata/standard.odata/{resource}", self.post)
        return app

    async def start(self, base: str = "ut11") -> str:
        self._runner = web.AppRunner(self.app())
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self.url(base)

    def url(self, base: str = "ut11") -> str:
        return f"http://127.0.0.1:{self.port}/{base}/odata/standard.odata/"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @web.middleware
    async def _gate(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append(
            (request.method, request.match_info.get("resource", ""), dict(request.query))
        )
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.down:
            return web.Response(status=503, text="<html>503 Service Unavailable</html>")
        header = request.headers.get("Authorization", "")
        try:
            login, _, password = (
                base64.b64decode(header.removeprefix("Basic ")).decode().partition(":")
            )
        except (ValueError, UnicodeDecodeError):
            login, password = "", ""
        if not header.startswith("Basic ") or (login, password) != (self.username, self.password):
            return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="1C"'})
        return await handler(request)

    async def metadata(self, request: web.Request) -> web.Response:
        types = "".join(
            f"<EntityType Name={quoteattr(name)}>"
            + "".join(f'<Property Name={quoteattr(f)} Type="Edm.String"/>' for f in fields)
            + "</EntityType>"
            for name, fields in self.schema.items()
        )
        sets = "".join(
            f"<EntitySet Name={quoteattr(name)} EntityType={quoteattr('StandardODATA.' + name)}/>"
            for name in self.schema
        )
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<edmx:Edmx xmlns:edmx="http://schemas.microsoft.com/ado/2007/06/edmx" Version="1.0">'
            '<edmx:DataServices xmlns:m="http://schemas.microsoft.com/ado/2007/08/dataservices/'
            'metadata" m:DataServiceVersion="3.0">'
            '<Schema xmlns="http://schemas.microsoft.com/ado/2009/11/edm" '
            'Namespace="StandardODATA">'
            f'{types}<EntityContainer Name="EnterpriseV8" m:IsDefaultEntityContainer="true">'
            f"{sets}</EntityContainer></Schema></edmx:DataServices></edmx:Edmx>"
        )
        return web.Response(body=body.encode(), content_type="application/xml", charset="utf-8")

    def _resource(self, request: web.Request) -> tuple[str, str | None]:
        resource = request.match_info["resource"]
        found = re.fullmatch(r"(\w+)(?:\(guid'([0-9a-fA-F-]{36})'\))?", resource)
        if found is None or found.group(1) not in self.schema:
            raise web.HTTPNotFound()
        return found.group(1), found.group(2) and str(uuid.UUID(found.group(2)))

    def _select(self, entity_set: str, row: dict[str, Any], select: str | None) -> dict[str, Any]:
        published = self.schema[entity_set]
        wanted = [f.strip() for f in select.split(",")] if select else published
        for name in wanted:
            if name not in published:
                raise FilterError(f"Тип '{entity_set}' не содержит свойства '{name}'")
        return {k: row.get(k) for k in wanted}

    async def get(self, request: web.Request) -> web.Response:
        if request.query.get("$format") != "json":
            return _error(400, "the stand-in answers $format=json only")
        try:
            entity_set, ref = self._resource(request)
        except web.HTTPNotFound:
            return _error(404, "Не найден ресурс")
        select = request.query.get("$select")
        try:
            if ref is not None:
                entity = self.sets.get(entity_set, {}).get(ref)
                if entity is None:
                    return _error(404, "Не найден объект")
                return web.json_response(self._select(entity_set, entity, select))
            rows = self._query(
                entity_set, request.query.get("$filter"), request.query.get("$orderby")
            )
            skip = int(request.query.get("$skip", "0"))
            top = request.query.get("$top")
            page = rows[skip : skip + int(top)] if top is not None else rows[skip:]
            value = [self._select(entity_set, row, select) for row in page]
        except (FilterError, ValueError) as exc:
            return _error(400, f"Ошибка разбора запроса: {exc}")
        return web.json_response({"odata.metadata": f"$metadata#{entity_set}", "value": value})

    def _query(
        self, entity_set: str, where: str | None, orderby: str | None
    ) -> list[dict[str, Any]]:
        key = (entity_set, where or "", orderby or "")
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        rows = self._rows(entity_set)
        refs = _REFS_FIRST.match(where or "")
        if refs:  # "(Ref_Key eq guid'…' or …) and …": found by reference, as 1C's index does
            wanted = {str(uuid.UUID(ref)) for ref in _GUID.findall(refs.group(0))}
            rows = [row for row in rows if row.get("Ref_Key") in wanted]
        if where:
            test = _Filter(where).test
            rows = [row for row in rows if test(row)]
        if orderby:
            fields = [f.strip().split(" ")[0] for f in orderby.split(",")]
            rows = sorted(rows, key=lambda row: tuple(str(row.get(f, "")) for f in fields))
        self._cache[key] = rows
        return rows

    async def post(self, request: web.Request) -> web.Response:
        try:
            entity_set, ref = self._resource(request)
        except web.HTTPNotFound:
            return _error(404, "Не найден ресурс")
        if ref is not None:
            return _error(400, "POST creates objects; a reference names one")
        if self.fail_posts:
            self.fail_posts -= 1
            return _error(500, "Не удалось записать: конфликт блокировок")
        body = await request.json()
        unknown = sorted(set(body) - set(self.schema[entity_set]))
        if unknown:
            return _error(400, f"Неизвестное свойство: {unknown[0]}")
        if entity_set == "InformationRegister_НапоминанияПользователя":
            record = {k: body.get(k) for k in self.schema[entity_set]}
            if any(all(r.get(k) == record[k] for k in REMINDER_KEY) for r in self.reminders):
                return _error(400, "Запись с такими ключевыми полями существует!")
            self.reminders.append(record)
            self._cache.clear()
            return web.json_response(record, status=201)
        new_ref = body.get("Ref_Key") or str(uuid.uuid4())
        if new_ref in self.sets[entity_set]:
            return _error(400, "Объект с такой ссылкой уже существует")
        number = f"00-{len(self.sets[entity_set]) + 1:06d}"
        fields = {"DeletionMark": False, "Posted": False, "Number": number, **body}
        self._store(entity_set, new_ref, fields)
        if self.lose_answers:
            self.lose_answers -= 1
            return web.Response(status=502, text="<html>502 Bad Gateway</html>")
        return web.json_response(self.sets[entity_set][new_ref], status=201)
