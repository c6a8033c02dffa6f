"""What every SMDR adapter's ``[[pbx]]`` entry has: where the records come from (a
serial port, a TCP connection to the PBX, or a TCP port the PBX connects to), how they
are written and what the numbers in them mean.

Imported when the configuration is read: it imports nothing but the core's ``cti.pbx``
and pydantic.
"""

from __future__ import annotations

import codecs
from typing import Literal

from pydantic import Field, field_validator, model_validator

from cti.pbx import PbxSettings, time_zone_name

Transport = Literal["serial", "connect", "listen"]


class SmdrSettings(PbxSettings):
    transport: Transport
    # connect: the PBX's address; listen: the only address a connection is taken from.
    host: str = Field("", pattern=r"^[A-Za-z0-9_.:-]*$")
    port: int = Field(0, ge=0, le=65535)  # connect: the PBX's SMDR port
    encoding: str = "utf-8"  # how the PBX writes names
    time_zone: str = ""  # the PBX clock's zone; empty: [server] time_zone
    # Digits the PBX dials out before a number (a trunk access code such as 9) that are
    # not the number itself; removed from outgoing numbers (the longest that fits).
    trunk_prefixes: list[str] = Field(default_factory=list)
    reconnect_max_seconds: float = Field(30.0, gt=0)
    # The stream quiet this long: a record held back for its pair is taken as it is.
    idle_seconds: float = Field(3.0, gt=0, le=600)

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, name: str) -> str:
        try:
            codecs.lookup(name)
        except LookupError:
            raise ValueError(f"{name!r} is not a text encoding Python knows") from None
        return name

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, name: str) -> str:
        return time_zone_name(name)

    @field_validator("trunk_prefixes")
    @classmethod
    def _digits(cls, prefixes: list[str]) -> list[str]:
        for prefix in prefixes:
            if not prefix.isdigit() or len(prefix) > 6:
                raise ValueError(f"{prefix!r} is not a trunk access code (digits)")
        return prefixes

    @model_validator(mode="after")
    def _transport_needs(self) -> SmdrSettings:
        if self.transport == "connect" and not (self.host and self.port):
            raise ValueError("transport = 'connect' needs host and port")
        if self.transport == "listen" and not self.host:
            raise ValueError(
                "transport = 'listen' needs host: the PBX's address, the only one let in"
            )
        return self


class SerialSmdrSettings(SmdrSettings):
    """A PBX that can print its records on a serial port, too."""

    serial_port: str = ""  # serial: /dev/ttyUSB0, /dev/serial/by-id/...
    baudrate: int = Field(9600, ge=300, le=921600)
    bytesize: Literal[7, 8] = 8
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1

    @model_validator(mode="after")
    def _serial_needs_a_port(self) -> SerialSmdrSettings:
        if self.transport == "serial" and not self.serial_port:
            raise ValueError("transport = 'serial' needs serial_port")
        return self


class ListeningSmdrSettings(SmdrSettings):
    """A PBX that can connect to the service and send its records."""

    listen_host: str = "0.0.0.0"  # noqa: S104 (the PBX is on the LAN; only `host` is let in)
    listen_port: int = Field(0, ge=0, le=65535)  # listen: where the PBX connects (0: any)
