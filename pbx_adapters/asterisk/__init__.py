"""Asterisk: the AMI adapter (panoramisk), call tracking, click-to-dial and AGI.

``PLUGIN`` is what the core finds under the ``cti.pbx_adapters`` entry point; the
adapter's own modules load only when one is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cti.pbx import PbxContext, PbxPlugin
from pbx_adapters.asterisk.settings import AgiConfig, AsteriskSettings

if TYPE_CHECKING:
    from pbx_adapters.asterisk.adapter import AsteriskAdapter
    from pbx_adapters.asterisk.fastagi import FastAgiServer


def build(settings: AsteriskSettings, context: PbxContext) -> AsteriskAdapter:
    from pbx_adapters.asterisk.adapter import AsteriskAdapter

    return AsteriskAdapter(settings, context)


def build_services(sections: dict[str, Any], context: PbxContext) -> list[FastAgiServer]:
    """The FastAGI server, when ``[agi] fastagi_listen`` asks for one."""
    agi: AgiConfig = sections["agi"]
    if not agi.fastagi_listen:
        return []
    from pbx_adapters.asterisk.fastagi import FastAgiServer

    return [FastAgiServer.listening_on(agi.fastagi_listen, context, lookup_timeout=agi.timeout)]


PLUGIN = PbxPlugin(
    settings=AsteriskSettings, build=build, sections={"agi": AgiConfig}, services=build_services
)
