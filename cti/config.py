"""Configuration: one TOML file plus ``CTI_*`` environment overrides, validated at start-up.

Environment overrides name a section and a key: ``CTI_SERVER_PORT=8081`` sets
``[server] port``; list sections take an index: ``CTI_PBX_0_SECRET=...`` sets ``secret``
of the first ``[[pbx]]``. Every option is documented in ``cti.example.toml``.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import phonenumbers
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from cti.domain import EXTENSION_PATTERN, known_time_zone
from cti.pbx import LinkName, PbxSettings, plugins

ENV_PREFIX = "CTI_"
# CTI_* variables that are not configuration keys.
ENV_NOT_CONFIG = {"CTI_CONFIG"}
ENV_NOT_CONFIG_PREFIXES = ("CTI_TEST_",)


class ConfigError(Exception):
    """A configuration problem, worded for the person who edits the file."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    data_dir: Path = Path("data")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "text"] = "json"
    session_hours: float = Field(12.0, gt=0, le=24 * 90)  # a browser login lasts this long
    ws_heartbeat_seconds: float = Field(25.0, ge=1, le=300)
    ws_replay_seconds: float = Field(120.0, ge=0, le=3600)  # kept for clients that reconnect
    ws_replay_frames: int = Field(20_000, ge=0, le=1_000_000)
    ws_send_buffer: int = Field(1000, ge=10, le=100_000)  # frames a slow client may lag
    # An open /ws whose token ended (sign-out, expiry, revocation) closes within this.
    ws_auth_check_seconds: float = Field(3.0, gt=0, le=60)
    # Frames a client may send a second (pings, the auth frame); more closes it.
    ws_client_frames_per_second: float = Field(5.0, gt=0, le=1000)
    # Reverse proxies whose X-Forwarded-For / X-Forwarded-Proto are believed (addresses
    # or networks, e.g. "127.0.0.1"); from anyone else those headers are ignored.
    trusted_proxies: list[str] = []
    # The office's time zone: the pages show times in it (each user may choose another).
    time_zone: str = "Europe/Moscow"

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, name: str) -> str:
        if not known_time_zone(name):
            raise ValueError(f"{name!r} is not an IANA time zone (e.g. Europe/Moscow)")
        return name

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, entries: list[str]) -> list[str]:
        for entry in entries:
            try:
                ipaddress.ip_network(entry.strip(), strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not an address or a network") from None
        return entries


class DatabaseConfig(_Section):
    url: str = ""  # empty: SQLite file cti.db in server.data_dir
    auto_migrate: bool = False
    echo: bool = False

    @field_validator("url")
    @classmethod
    def _known_driver(cls, url: str) -> str:
        if url and not url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError(
                "must start with sqlite+aiosqlite:// or postgresql+asyncpg:// "
                "(the service talks to its database asynchronously)"
            )
        return url


class PhoneConfig(_Section):
    default_region: str = "RU"

    @field_validator("default_region")
    @classmethod
    def _known_region(cls, region: str) -> str:
        region = region.upper()
        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"{region!r} is not an ISO 3166 region phonenumbers knows (e.g. RU)")
        return region


def _pbx_entry() -> Any:
    """One ``[[pbx]]`` entry: the settings of the adapter its ``type`` names."""
    models = [plugin.settings for plugin in plugins().values()]
    if not models:
        return PbxSettings
    if len(models) == 1:
        return models[0]
    return Annotated[Union[tuple(models)], Field(discriminator="type")]  # noqa: UP007


PbxEntry = _pbx_entry()


class ModemConfig(_Section):
    name: LinkName = ""  # empty: "modem<index>"
    port: str
    baudrate: int = Field(115200, gt=0)
    pin: SecretStr | None = None
    enabled: bool = True
    # Calls to the SIM card pop up on these extensions' screens (receptionists see them all).
    ring_extensions: list[str] = []

    @field_validator("ring_extensions")
    @classmethod
    def _extensions(cls, extensions: list[str]) -> list[str]:
        for extension in extensions:
            if not EXTENSION_PATTERN.match(extension):
                raise ValueError(f"{extension!r} is not an extension (digits only)")
        return extensions


class SmsConfig(_Section):
    max_parts: int = Field(6, ge=1, le=20)  # a longer text is refused
    per_user_per_hour: int = Field(100, ge=1)  # messages a user may queue in an hour
    status_reports: bool = True  # ask the network for delivery reports
    retry_base_seconds: float = Field(5.0, gt=0)


class CrmConfig(_Section):
    type: Literal["builtin", "http", "bitrix24", "onec"] = "builtin"
    # A screen pop waits at most this long for the directory; a later answer updates it.
    lookup_budget_ms: int = Field(300, ge=10, le=10_000)
    timeout_ms: int = Field(2000, ge=50, le=60_000)  # one request to an external CRM
    cache_seconds: int = Field(300, ge=0)  # answers, found or not, kept this long
    breaker_failures: int = Field(5, ge=1)  # failures in a row that stop asking for a while
    breaker_reset_seconds: int = Field(30, ge=1)
    # A number the PBX delivered without its area code matches a stored number that ends
    # in the same last N digits, when exactly one does. 0 turns this off.
    suffix_digits: int = Field(7, ge=0, le=15)
    # Callback tasks for missed calls of unknown callers (and clients without a manager).
    default_manager_extension: str = Field("", pattern=r"^[0-9]{0,10}$")
    create_leads: bool = False  # an unknown caller becomes a new client ("lead")
    # type = "http": a GET to http_url with {number} (E.164, URL-encoded) filled in.
    http_url: str = ""
    http_headers: dict[str, SecretStr] = {}  # e.g. Authorization; never logged
    # Where each Match field is in the JSON answer, as dotted paths ("owner.name").
    http_fields: dict[str, str] = {}
    # type = "bitrix24": the inbound webhook URL (it contains the key; never logged).
    bitrix24_webhook: SecretStr | None = None
    bitrix24_users: dict[str, int] = {}  # extension -> Bitrix24 user id
    # Off by default: Bitrix24 documents telephony.externalCall.* for applications, and a
    # portal may refuse them from an inbound webhook (WRONG_AUTH_TYPE).
    bitrix24_register_calls: bool = False
    # type = "onec": a 1C:Enterprise base's standard OData interface, as a 1C user.
    onec_url: str = ""  # https://host/<base>/odata/standard.odata/
    onec_username: str = ""
    onec_password: SecretStr | None = None
    onec_users: dict[str, str] = {}  # 1C user reference (GUID) -> extension
    # Object and field names where the base differs from УТ 11 / КА 2 / 1C:CRM 3.
    onec_names: dict[str, str] = {}
    onec_refresh_seconds: float = Field(300.0, ge=10)  # the local phone index
    onec_page_size: int = Field(1000, ge=10, le=10_000)  # rows per OData request
    # A pop's link opens the partner in the thin client (e1c://...) or the web client.
    onec_open_in: Literal["thin", "web", "none"] = "thin"
    onec_thin_client: str = ""  # e.g. e1c://server/srv1c/ut11
    onec_web_client: str = ""  # e.g. https://1c.example.ru/ut11/ru_RU/
    onec_write_calls: bool = True  # Document_ТелефонныйЗвонок after each call
    onec_missed_reminders: bool = True  # and a reminder for a missed call's manager
    onec_reminder_minutes: float = Field(0.0, ge=0, le=7 * 24 * 60)
    onec_time_zone: str = ""  # the base's time zone; empty: [server] time_zone
    # Where 1C users reach this service (for the link in a call's description).
    onec_service_url: str = ""

    @field_validator("onec_time_zone")
    @classmethod
    def _onec_zone(cls, name: str) -> str:
        if name and not known_time_zone(name):
            raise ValueError(f"{name!r} is not an IANA time zone (e.g. Europe/Moscow)")
        return name

    @field_validator("onec_users")
    @classmethod
    def _onec_users(cls, users: dict[str, str]) -> dict[str, str]:
        for ref, extension in users.items():
            if not re.fullmatch(r"[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}", ref):
                raise ValueError(f"{ref!r} is not a 1C user reference (a GUID)")
            if not EXTENSION_PATTERN.match(extension):
                raise ValueError(f"{extension!r} is not an extension (digits only)")
        return users

    @model_validator(mode="after")
    def _connector_settings(self) -> CrmConfig:
        if self.type == "http" and "{number}" not in self.http_url:
            raise ValueError('http_url must contain {number} when type = "http"')
        if self.type == "bitrix24" and not self.bitrix24_webhook:
            raise ValueError('bitrix24_webhook is required when type = "bitrix24"')
        if self.type == "onec" and "standard.odata" not in self.onec_url:
            raise ValueError(
                'onec_url must name the OData interface when type = "onec" '
                "(https://host/<base>/odata/standard.odata/)"
            )
        return self


class RecordingsConfig(_Section):
    dir: str = ""  # empty: <server.data_dir>/recordings
    pbx_dir: str = ""  # where the PBX writes them, as the PBX names it
    watch_dir: str = ""  # empty: no folder is watched
    watch_seconds: float = Field(10.0, gt=0)
    match_seconds: float = Field(120.0, ge=0)
    retention_days: int = Field(0, ge=0)  # 0: keep forever
    missing_after_seconds: float = Field(900.0, gt=0)  # after the call: "missing", logged
    transcode: Literal["none", "opus"] = "none"

    @field_validator("pbx_dir")
    @classmethod
    def _absolute(cls, path: str) -> str:
        if path and not path.startswith("/"):
            raise ValueError("must be absolute, e.g. /var/spool/asterisk/monitor")
        return path


class FaxConfig(_Section):
    dir: str = ""  # where the service keeps faxes; empty: <server.data_dir>/faxes
    # Received faxes' TIFFs: the PBX's folder as mounted on this host, and the same folder
    # as the PBX names it (ReceiveFAX's file names), as for recordings.
    incoming_dir: str = ""
    pbx_dir: str = ""
    # Who reads faxes from senders with no responsible manager (the fax group).
    group_extensions: list[str] = []
    retention_days: int = Field(0, ge=0)  # 0: keep forever
    missing_after_seconds: float = Field(600.0, gt=0)  # a TIFF that never came: "missing"
    max_pages: int = Field(200, ge=1, le=2000)
    # Sending (fax/outbox.py): which PBX sends (empty: the first that can), where the
    # service puts the TIFFs it sends, as the PBX names that folder (empty: as here).
    pbx: str = ""
    pbx_outgoing_dir: str = ""
    max_upload_mb: float = Field(20.0, gt=0, le=500)
    paper: Literal["a4", "letter"] = "a4"  # the page documents are fitted to, unless asked
    # E-mail to the sender when their fax is sent or fails (their address: the users
    # API's email). Empty smtp_host: no mail.
    smtp_host: str = ""
    smtp_port: int = Field(587, ge=1, le=65535)
    smtp_security: Literal["starttls", "tls", "none"] = "starttls"
    smtp_username: str = ""
    smtp_password: SecretStr | None = None
    mail_from: str = ""
    # Retries, after HylaFAX's: a busy line again after busy_retry_seconds, no answer after
    # no_answer_retry_seconds, anything else after retry_seconds; at most max_dials dials
    # and max_tries transmissions begun; after kill_hours the job gives up.
    busy_retry_seconds: float = Field(180.0, gt=0)
    no_answer_retry_seconds: float = Field(300.0, gt=0)
    retry_seconds: float = Field(300.0, gt=0)
    max_dials: int = Field(12, ge=1, le=100)
    max_tries: int = Field(3, ge=1, le=20)
    kill_hours: float = Field(3.0, gt=0, le=24 * 7)

    @field_validator("pbx_dir")
    @classmethod
    def _absolute(cls, path: str) -> str:
        if path and not path.startswith("/"):
            raise ValueError("must be absolute, e.g. /var/spool/asterisk/fax")
        return path

    @field_validator("group_extensions")
    @classmethod
    def _extensions(cls, extensions: list[str]) -> list[str]:
        for extension in extensions:
            if not re.fullmatch(r"[0-9]{2,10}", extension):
                raise ValueError(f"{extension!r} is not an extension")
        return extensions


class ClusterConfig(_Section):
    """Several ``cti serve`` nodes sharing PostgreSQL and a NATS server (docs/deploy.md)."""

    nats_url: SecretStr = SecretStr("")  # empty: one node, no NATS; may hold a password
    node: str = ""  # this node's name in /healthz and the logs; empty: host name and pid
    stream: str = "cti"  # the JetStream stream (and the subjects' prefix) the nodes share
    # A node that stops answering keeps a link (PBX, modem) this long before another takes
    # it; it stops driving the link itself before then.
    lease_seconds: float = Field(5.0, ge=2, le=300)

    @field_validator("stream")
    @classmethod
    def _subject_token(cls, name: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,32}", name):
            raise ValueError("letters, digits, - and _ only (it names NATS subjects)")
        return name

    @property
    def enabled(self) -> bool:
        return bool(self.nats_url.get_secret_value())


class CoreConfig(_Section):
    """The core's sections; ``Config`` adds those the PBX adapters own."""

    server: ServerConfig = ServerConfig()
    database: DatabaseConfig = DatabaseConfig()
    phone: PhoneConfig = PhoneConfig()
    pbx: list[PbxEntry] = []
    modem: list[ModemConfig] = []
    sms: SmsConfig = SmsConfig()
    crm: CrmConfig = CrmConfig()
    recordings: RecordingsConfig = RecordingsConfig()
    fax: FaxConfig = FaxConfig()
    cluster: ClusterConfig = ClusterConfig()

    @model_validator(mode="after")
    def _cluster_shares_postgresql(self) -> CoreConfig:
        if self.cluster.enabled and not self.database.url.startswith("postgresql"):
            raise ValueError(
                "cluster.nats_url: several nodes share one PostgreSQL database; set "
                "database.url to postgresql+asyncpg://..."
            )
        return self

    @model_validator(mode="after")
    def _name_links(self) -> CoreConfig:
        pbx = [p.model_copy(update={"name": p.name or f"pbx{i}"}) for i, p in enumerate(self.pbx)]
        modems = [
            m.model_copy(update={"name": m.name or f"modem{i}"}) for i, m in enumerate(self.modem)
        ]
        names = [link.name for link in [*pbx, *modems]]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"link names must be unique, repeated: {', '.join(duplicates)}")
        object.__setattr__(self, "pbx", pbx)
        object.__setattr__(self, "modem", modems)
        return self

    @property
    def database_url(self) -> str:
        if self.database.url:
            return self.database.url
        return f"sqlite+aiosqlite:///{self.server.data_dir / 'cti.db'}"

    @property
    def recordings_dir(self) -> Path:
        if self.recordings.dir:
            return Path(self.recordings.dir)
        return self.server.data_dir / "recordings"

    @property
    def fax_dir(self) -> Path:
        return Path(self.fax.dir) if self.fax.dir else self.server.data_dir / "faxes"

    def secrets(self) -> list[str]:
        """Every secret value in the configuration, for the log redactor."""
        values = [secret for p in self.pbx for secret in p.secrets()]
        values += [m.pin.get_secret_value() for m in self.modem if m.pin]
        for name in adapter_sections():
            section = getattr(self, name)
            values += [
                v.get_secret_value()
                for key in type(section).model_fields
                if isinstance(v := getattr(section, key), SecretStr)
            ]
        values += [h.get_secret_value() for h in self.crm.http_headers.values()]
        if self.fax.smtp_password:
            values.append(self.fax.smtp_password.get_secret_value())
        if self.crm.bitrix24_webhook:
            values.append(self.crm.bitrix24_webhook.get_secret_value())
        if self.crm.onec_password:
            values.append(self.crm.onec_password.get_secret_value())
        values.append(self.cluster.nats_url.get_secret_value())
        return [v for v in values if v]


def adapter_sections() -> dict[str, type[BaseModel]]:
    """The sections the installed PBX adapters own (e.g. Asterisk's ``[agi]``)."""
    return {name: model for p in plugins().values() for name, model in p.sections.items()}


# The whole configuration: the core's sections and the adapters'.
Config = create_model(
    "Config",
    __base__=CoreConfig,
    __module__=__name__,
    **{name: (model, model()) for name, model in adapter_sections().items()},
)


def load_config(
    path: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Read, override and validate the configuration; raise ConfigError with one clear line."""
    environ = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    base_dir = Path.cwd()
    if path is not None:
        path = Path(path)
        try:
            with path.open("rb") as f:
                data = tomllib.load(f)
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such file") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path}: not valid TOML: {e}") from None
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path}: cannot read: {e}") from None
        base_dir = path.resolve().parent
    where = str(path) if path is not None else "configuration"
    from_env = _apply_env_overrides(data, environ)
    try:
        config = Config.model_validate(data)
    except ValidationError as e:
        loc = tuple(_place(e.errors()[0]))
        variable = from_env.get(loc)  # a value from the environment: name the variable
        raise ConfigError(
            f"environment variable {variable}: {_describe(e, key=False)}"
            if variable
            else f"{where}: {_describe(e)}"
        ) from None
    # Relative paths are relative to the file that names them.
    data_dir = config.server.data_dir
    if not data_dir.is_absolute():
        server = config.server.model_copy(update={"data_dir": base_dir / data_dir})
        config = config.model_copy(update={"server": server})
    recordings = config.recordings
    paths = {
        key: str(base_dir / value)
        for key in ("dir", "watch_dir")
        if (value := getattr(recordings, key)) and not Path(value).is_absolute()
    }
    if paths:
        config = config.model_copy(update={"recordings": recordings.model_copy(update=paths)})
    return config


def _apply_env_overrides(
    data: dict[str, Any], environ: Mapping[str, str]
) -> dict[tuple[str, ...], str]:
    """Apply CTI_* variables to ``data``; returns which variable set each key (by its
    place, as validation errors name it)."""
    sections = Config.model_fields
    applied: dict[tuple[str, ...], str] = {}
    for name, value in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX) or name in ENV_NOT_CONFIG:
            continue
        if name.startswith(ENV_NOT_CONFIG_PREFIXES):
            continue
        section, _, rest = name[len(ENV_PREFIX) :].lower().partition("_")
        if section not in sections or not rest:
            hint = _did_you_mean(section, sections)
            raise ConfigError(f"environment variable {name}: no section [{section}]{hint}")
        if section in ("pbx", "modem"):
            index_text, _, key = rest.partition("_")
            if not index_text.isdigit() or not key:
                raise ConfigError(
                    f"environment variable {name}: a list section takes an index, "
                    f"e.g. {ENV_PREFIX}{section.upper()}_0_{(key or 'HOST').upper()}"
                )
            items = data.setdefault(section, [])
            index = int(index_text)
            if index >= len(items):
                raise ConfigError(
                    f"environment variable {name}: there are {len(items)} [[{section}]] "
                    "entries in the file; overrides may only change existing ones"
                )
            items[index][key] = value
            applied[(section, index_text, key)] = name
        else:
            table = data.setdefault(section, {})
            if not isinstance(table, dict):
                raise ConfigError(f"environment variable {name}: [{section}] is not a table")
            table[rest] = value
            applied[(section, rest)] = name
    return applied


def _did_you_mean(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def _describe(error: ValidationError, key: bool = True) -> str:
    """The first problem as 'section.key: what is wrong' (without the key: 'what')."""
    first = error.errors()[0]
    parts = _place(first)
    where = ""
    for p in parts:
        where += f"[{p}]" if p.isdigit() else (f".{p}" if where else p)
    if first["type"] == "extra_forbidden":
        parent = _adapter_settings(first) or _model_at(parts[:-1])
        hint = _did_you_mean(parts[-1], parent.model_fields) if parent else ""
        message = f"unknown option{hint}"
    elif first["type"] in ("missing", "union_tag_not_found"):
        message = "is required"
    elif first["type"] == "union_tag_invalid":
        message = "Input should be " + first["ctx"]["expected_tags"].replace(", ", " or ")
    else:
        message = first["msg"].removeprefix("Value error, ")
        if "input" in first and not isinstance(first["input"], dict | list):
            # URLs may carry a password or a key (a CRM webhook, a PBX's CDR database).
            secret = parts and (
                parts[-1] in ("secret", "pin", "token") or parts[-1].endswith("url")
            )
            if not secret:
                message += f" (got {first['input']!r})"
    more = len(error.errors()) - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return f"{where or 'top level'}: {message}{suffix}" if key else f"{message}{suffix}"


def _place(error: Any) -> list[str]:
    """Where an error is, as the file names it: a ``[[pbx]]`` entry's options without the
    adapter type pydantic puts in between (``pbx.0.asterisk.port``: ``pbx.0.port``)."""
    loc = [str(p) for p in error["loc"]]
    if loc[:1] == ["pbx"] and len(loc) > 2 and loc[2] in plugins():
        del loc[2]
    if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
        loc.append("type")
    return loc


def _adapter_settings(error: Any) -> type[BaseModel] | None:
    """The options model of the adapter a ``[[pbx]]`` error is about, when known."""
    loc = [str(p) for p in error["loc"]]
    models = {name: plugin.settings for name, plugin in plugins().items()}
    if loc[:1] == ["pbx"] and len(loc) > 3 and loc[2] in models:
        return models[loc[2]]
    if loc[:1] == ["pbx"] and len(models) == 1:
        return next(iter(models.values()))
    return None


def _model_at(parts: list[str]) -> type[BaseModel] | None:
    model: type[BaseModel] = Config
    for p in parts:
        if p.isdigit():
            continue
        field = model.model_fields.get(p)
        if field is None:
            return None
        annotation = field.annotation
        inner = getattr(annotation, "__args__", (annotation,))[0]
        if not (isinstance(inner, type) and issubclass(inner, BaseModel)):
            return None
        model = inner
    return model
