"""Zadarma and Novofon (the same API): ``[[pbx]] type = "zadarma"``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator

from cti.pbx import time_zone_name
from pbx_adapters.cloud.settings import CloudSettings


class ZadarmaSettings(CloudSettings):
    type: Literal["zadarma"]
    # https://api.zadarma.com for Zadarma; https://api.novofon.com for Novofon.
    api_url: str = Field("https://api.zadarma.com", pattern=r"^https?://[^\s/]+(?::\d+)?$")
    # The API key and secret (Settings -> API in the dashboard); the secret also signs
    # the webhooks.
    api_key: SecretStr
    api_secret: SecretStr
    # Notifications carry no time but their call's start: one whose call began longer ago
    # than this is refused (a call rarely lasts 12 hours; a replay may be older).
    max_event_age_seconds: float = Field(43200.0, gt=0)
    # call_start is the account's wall clock; empty: [server] time_zone.
    time_zone: str = ""
    # Zadarma advises waiting this long after NOTIFY_RECORD before fetching the file.
    record_delay_seconds: float = Field(40.0, ge=0, le=600)
    # A click-to-dial whose call has not started this long after is reported failed.
    originate_timeout: float = Field(60.0, gt=0, le=600)

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, name: str) -> str:
        return time_zone_name(name)
