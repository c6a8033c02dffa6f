"""Panasonic KX-TDA/TDE/NS over SMDR: finished calls from the PBX's call record output,
on its serial port or its network SMDR port.

``PLUGIN`` is what the core finds under the ``cti.pbx_adapters`` entry point; the
adapter's own modules load only when one is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cti.pbx import PbxContext, PbxPlugin
from pbx_adapters.smdr.panasonic.settings import PanasonicSettings

if TYPE_CHECKING:
    from pbx_adapters.smdr.adapter import SmdrAdapter


def build(settings: PanasonicSettings, context: PbxContext) -> SmdrAdapter:
    from zoneinfo import ZoneInfo

    from pbx_adapters.smdr.adapter import SmdrAdapter
    from pbx_adapters.smdr.numbers import NumberRules
    from pbx_adapters.smdr.panasonic.calls import PanasonicCalls
    from pbx_adapters.smdr.panasonic.login import SmdrLogin

    decoder = PanasonicCalls(
        settings.name,
        NumberRules(context.region, tuple(settings.trunk_prefixes)),
        ZoneInfo(settings.time_zone or context.time_zone),
        date_order=settings.date_order,
        time_is=settings.time_is,
    )
    if settings.transport == "serial":
        return SmdrAdapter(settings, context, decoder)
    password = settings.password.get_secret_value()
    return SmdrAdapter(
        settings, context, decoder, handshake=lambda: SmdrLogin(settings.user, password)
    )


PLUGIN = PbxPlugin(settings=PanasonicSettings, build=build)
