"""Mango Office VPBX: ``[[pbx]] type = "mango"``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr

from pbx_adapters.cloud.settings import CloudSettings


class MangoSettings(CloudSettings):
    type: Literal["mango"]
    api_url: str = Field("https://app.mango-office.ru/vpbx/", pattern=r"^https?://\S+/$")
    # The VPBX's API key and salt (Integrations -> API in the Mango dashboard).
    api_key: SecretStr
    api_salt: SecretStr
    # The office number click-to-dial calls out from (and shows the client); empty: the
    # VPBX's default line.
    line_number: str = Field("", pattern=r"^[0-9]{0,15}$")
