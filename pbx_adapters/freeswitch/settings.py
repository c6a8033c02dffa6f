"""The FreeSWITCH adapter's options: a ``[[pbx]]`` entry with ``type = "freeswitch"``.

Imported when the configuration is read, so it imports nothing but the core's
``cti.pbx`` and pydantic.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, SecretStr, field_validator

from cti.pbx import PbxSettings, regular_expressions

# A phone's leg: FreeSWITCH names it after the registered contact ("101-0x5649...@host"
# for a baresip phone, "101@host" for most desk phones) on the SIP profile it uses.
DEFAULT_EXTENSION_CHANNELS = [r"^sofia/[^/]+/(?:sip:)?(?P<ext>[0-9]{2,6})(?:-0x[0-9a-f]+)?@"]
# The outside world: gateways (FusionPBX's trunks), the external profile, loopback legs
# (ring groups and follow-me in some dialplans, the lab's simulated callers).
DEFAULT_OUTSIDE_CHANNELS = [r"^sofia/gateway/", r"^sofia/external/", r"^loopback/"]
# What may stand in a dial string, a context or a domain: nothing that ends an api
# argument (space), a channel variable block ({}, [], <>) or a dial string list (, |).
SAFE_WORD = r"^[A-Za-z0-9_.@:+*#-]+$"


class FreeswitchSettings(PbxSettings):
    type: Literal["freeswitch"]
    host: str
    port: int = Field(8021, ge=1, le=65535)
    password: SecretStr
    # Events as JSON (default: decoded by the C json module, UTF-8 as is) or plain
    # (URL-decoded by us); both carry the same fields.
    event_format: Literal["json", "plain"] = "json"
    # FusionPBX is multi-tenant: each domain is a tenant. ``domain`` is where this link
    # dials and transfers (user/<ext>@<domain>); ``domains`` the tenants whose calls it
    # follows (empty: every call on the switch). A plain FreeSWITCH: its own domain
    # (the vanilla configuration uses the host's IP address).
    domain: str = Field(..., pattern=SAFE_WORD)
    domains: list[str] = Field(default_factory=list)
    # The dialplan context click-to-dial and transfers run in (FusionPBX: the domain).
    context: str = Field("default", pattern=SAFE_WORD)
    extension_channels: list[str] = Field(default_factory=lambda: list(DEFAULT_EXTENSION_CHANNELS))
    outside_channels: list[str] = Field(default_factory=lambda: list(DEFAULT_OUTSIDE_CHANNELS))
    # FreeSWITCH sends HEARTBEAT every 20 s: a link silent for longer than this is dead
    # (a NAT or firewall that dropped it sends no FIN) and is reconnected.
    heartbeat_timeout: float = Field(50.0, gt=0)
    reconnect_max_seconds: float = Field(30.0, gt=0)
    originate_timeout: int = Field(30, ge=5, le=300)
    dial_format: Literal["local", "e164"] = "local"
    dial_prefix: str = Field("", pattern=r"^[0-9*#]{0,4}$")
    # Where a recording the service starts goes ({uuid}: the recorded leg): an absolute
    # path on the FreeSWITCH host (FusionPBX: /var/lib/freeswitch/recordings/<domain>/).
    record_file: str = Field(
        "/var/lib/freeswitch/recordings/cti-{uuid}.wav", pattern=r"^/[A-Za-z0-9_./{}-]+$"
    )
    # Sending faxes: the dial string for a number ({number}: as dial_format/dial_prefix
    # make it), e.g. "sofia/gateway/trunk/{number}"; empty: this PBX sends no faxes.
    fax_dialstring: str = Field("", pattern=r"^$|^[A-Za-z0-9_./@:{}+-]+$")
    fax_timeout: int = Field(60, ge=5, le=300)
    max_calls: int = Field(5000, ge=10)
    max_channels: int = Field(20000, ge=10)

    @field_validator("domains")
    @classmethod
    def _safe_domains(cls, domains: list[str]) -> list[str]:
        for domain in domains:
            if not re.match(SAFE_WORD, domain):
                raise ValueError(f"{domain!r} is not a domain name")
        return domains

    @field_validator("extension_channels", "outside_channels")
    @classmethod
    def _valid_patterns(cls, patterns: list[str]) -> list[str]:
        return regular_expressions(patterns)

    @field_validator("extension_channels")
    @classmethod
    def _patterns_name_the_extension(cls, patterns: list[str]) -> list[str]:
        return regular_expressions(patterns, group="ext", names="the extension")

    @field_validator("fax_dialstring")
    @classmethod
    def _has_number_placeholder(cls, template: str) -> str:
        if template and "{number}" not in template:
            raise ValueError("must contain {number}, e.g. sofia/gateway/trunk/{number}")
        return _only_placeholder(template, "number")

    @field_validator("record_file")
    @classmethod
    def _names_the_leg_only(cls, template: str) -> str:
        return _only_placeholder(template, "uuid")


def _only_placeholder(template: str, name: str) -> str:
    """A template whose only placeholder is ``{name}`` (another would fail at the call)."""
    try:
        template.format(**{name: ""})
    except (KeyError, IndexError, ValueError):
        raise ValueError(f"the only placeholder it may hold is {{{name}}}") from None
    return template
