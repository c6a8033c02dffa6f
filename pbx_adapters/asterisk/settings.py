"""The Asterisk adapter's options: a ``[[pbx]]`` entry with ``type = "asterisk"``, and
the ``[agi]`` section (the FastAGI server and the ``cti-agi`` script).

Imported when the configuration is read, so it imports nothing but the core's
``cti.pbx`` and pydantic.
"""

from __future__ import annotations

from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from cti.pbx import PbxSettings, regular_expressions

DEFAULT_EXTENSION_CHANNELS = [
    r"^(?:SIP|PJSIP|IAX2)/(?P<ext>[0-9]{2,6})-[0-9a-fA-F]+$",
    r"^Local/(?P<ext>[0-9]{2,6})@[^;]+-[0-9a-fA-F]+;[12]$",
]
CDR_SCHEMES = ("mysql", "mariadb", "postgresql", "mysql+aiomysql", "postgresql+asyncpg")
TABLE_NAME = r"^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?$"
DEFAULT_INBOUND_CONTEXTS = ["from-trunk", "from-pstn", "from-external", "from-did", "inbound"]


class AsteriskSettings(PbxSettings):
    type: Literal["asterisk"]
    host: str
    port: int = Field(5038, ge=1, le=65535)
    username: str
    secret: SecretStr
    # A Ping every ping_interval seconds; one unanswered for ping_timeout means the link
    # is dead (a NAT or firewall that drops it sends no FIN), and it is reconnected.
    ping_interval: float = Field(5.0, gt=0)
    ping_timeout: float = Field(3.0, gt=0)
    reconnect_max_seconds: float = Field(30.0, gt=0)
    extension_channels: list[str] = Field(default_factory=lambda: list(DEFAULT_EXTENSION_CHANNELS))
    trunk_channels: list[str] = Field(default_factory=list)
    inbound_contexts: list[str] = Field(default_factory=lambda: list(DEFAULT_INBOUND_CONTEXTS))
    originate_channel: str = "PJSIP/{extension}"
    originate_context: str = "from-internal"
    transfer_context: str = "from-internal"
    originate_timeout: int = Field(30, ge=5, le=300)
    dial_format: Literal["local", "e164"] = "local"
    dial_prefix: str = Field("", pattern=r"^[0-9*#]{0,4}$")
    # Calls and channels followed at once on this link; beyond, new ones are skipped and
    # logged (a PBX or a stream gone wrong cannot exhaust the service).
    max_calls: int = Field(5000, ge=10)
    max_channels: int = Field(20000, ge=10)
    # Sending faxes: Originate dials the far end on fax_channel ({number}: the number as
    # dial_format/dial_prefix make it) into fax_context, whose "s" runs
    # SendFAX(${FAXFILE}) (docs/fax.md). Empty fax_channel: this PBX sends no faxes.
    fax_channel: str = ""
    fax_context: str = "cti-fax-send"
    fax_timeout: int = Field(60, ge=5, le=300)  # seconds the far end may ring
    # The PBX's CDR table, read after every (re)connect: how calls that ended unseen
    # really ended, and the calls that came and went while nobody listened. FreePBX:
    # "mysql://user:password@host/asteriskcdrdb". None: off.
    cdr_url: SecretStr | None = None
    cdr_table: str = Field("cdr", pattern=TABLE_NAME)  # or schema.table
    cdr_timezone: str = "UTC"  # the zone calldate is written in (FreePBX: the server's own)
    cdr_lookback_hours: float = Field(24.0, gt=0, le=24 * 31)  # how far back, at start-up

    @field_validator("cdr_url")
    @classmethod
    def _cdr_database(cls, url: SecretStr | None) -> SecretStr | None:
        if url is None or not url.get_secret_value().strip():
            return None  # off
        scheme = url.get_secret_value().partition("://")[0]
        if scheme not in CDR_SCHEMES:
            raise ValueError(f"must start with one of {', '.join(s + '://' for s in CDR_SCHEMES)}")
        return url

    @field_validator("cdr_timezone")
    @classmethod
    def _known_zone(cls, zone: str) -> str:
        try:
            ZoneInfo(zone)
        except (ValueError, KeyError):
            raise ValueError(f"{zone!r} is not a time zone (e.g. Europe/Moscow)") from None
        return zone

    @field_validator("extension_channels", "trunk_channels")
    @classmethod
    def _valid_patterns(cls, patterns: list[str]) -> list[str]:
        return regular_expressions(patterns)

    @field_validator("extension_channels")
    @classmethod
    def _patterns_name_the_extension(cls, patterns: list[str]) -> list[str]:
        return regular_expressions(patterns, group="ext", names="the extension")

    @field_validator("originate_channel")
    @classmethod
    def _has_extension_placeholder(cls, template: str) -> str:
        if "{extension}" not in template:
            raise ValueError("must contain {extension}, e.g. PJSIP/{extension}")
        return template


class AgiConfig(BaseModel):
    """``[agi]``: Asterisk's AGI, for routing a call to the caller's manager."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # FastAGI server inside the service, "host:port"; empty: off.
    fastagi_listen: str = Field("", pattern=r"^$|^[^:\s]+:[0-9]{1,5}$")
    # For the cti-agi script on the Asterisk host: the service's base URL and an API token.
    service_url: str = "http://127.0.0.1:8080"
    token: SecretStr | None = None
    timeout: float = Field(1.0, gt=0, le=10)
