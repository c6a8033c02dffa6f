"""Avaya IP Office over SMDR: finished calls from the CSV call records it sends over TCP
(it connects to the service, or listens for it).

``PLUGIN`` is what the core finds under the ``cti.pbx_adapters`` entry point; the
adapter's own modules load only when one is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cti.pbx import PbxContext, PbxPlugin
from pbx_adapters.smdr.avaya.settings import AvayaSettings

if TYPE_CHECKING:
    from pbx_adapters.smdr.adapter import SmdrAdapter


def build(settings: AvayaSettings, context: PbxContext) -> SmdrAdapter:
    from zoneinfo import ZoneInfo

    from pbx_adapters.smdr.adapter import SmdrAdapter
    from pbx_adapters.smdr.avaya.calls import AvayaCalls
    from pbx_adapters.smdr.numbers import NumberRules

    decoder = AvayaCalls(
        settings.name,
        NumberRules(context.region, tuple(settings.trunk_prefixes)),
        ZoneInfo(settings.time_zone or context.time_zone),
    )
    return SmdrAdapter(settings, context, decoder)


PLUGIN = PbxPlugin(settings=AvayaSettings, build=build)
