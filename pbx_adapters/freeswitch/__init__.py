"""FreeSWITCH (and FusionPBX): the Event Socket adapter, call tracking and click-to-dial.

``PLUGIN`` is what the core finds under the ``cti.pbx_adapters`` entry point; the
adapter's own modules load only when one is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cti.pbx import PbxContext, PbxPlugin
from pbx_adapters.freeswitch.settings import FreeswitchSettings

if TYPE_CHECKING:
    from pbx_adapters.freeswitch.adapter import FreeswitchAdapter


def build(settings: FreeswitchSettings, context: PbxContext) -> FreeswitchAdapter:
    from pbx_adapters.freeswitch.adapter import FreeswitchAdapter

    return FreeswitchAdapter(settings, context)


PLUGIN = PbxPlugin(settings=FreeswitchSettings, build=build)
