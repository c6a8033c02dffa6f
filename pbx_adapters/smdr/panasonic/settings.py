"""The Panasonic KX-TDA/TDE/NS SMDR adapter's options: ``type = "panasonic"``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr

from pbx_adapters.smdr.settings import SerialSmdrSettings


class PanasonicSettings(SerialSmdrSettings):
    type: Literal["panasonic"]
    # serial: the PBX's RS-232C port; connect: its network SMDR port (a telnet-like
    # login as user SMDR).
    transport: Literal["serial", "connect"] = "connect"
    port: int = Field(2300, ge=0, le=65535)
    user: str = Field("SMDR", pattern=r"^[A-Za-z0-9_]{1,16}$")
    password: SecretStr = SecretStr("")
    # The Date column's order, as the PBX's country setting prints it.
    date_order: Literal["MDY", "DMY", "YMD"] = "DMY"
    # The Time column: the call's end on KX-TDA/TDE/NS; its start on some older models.
    time_is: Literal["end", "start"] = "end"
    # IBM code pages print Cyrillic names as CP866 on Russian-market PBXs; "latin-1" for
    # the ISO-8859-1 setting.
    encoding: str = "cp866"
