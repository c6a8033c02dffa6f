"""The Avaya IP Office SMDR adapter's options: ``type = "avaya"``."""

from __future__ import annotations

from typing import Literal

from pbx_adapters.smdr.settings import ListeningSmdrSettings


class AvayaSettings(ListeningSmdrSettings):
    type: Literal["avaya"]
    # listen: IP Office Manager's SMDR IP Address is this service's, and the IP Office
    # connects (it buffers up to 3,000 records while it cannot); connect: that address
    # is 0.0.0.0, so the IP Office listens on its SMDR TCP Port and the service connects.
    transport: Literal["connect", "listen"] = "listen"
