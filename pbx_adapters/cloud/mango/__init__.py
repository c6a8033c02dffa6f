"""Mango Office (VPBX API): live screen pops from its webhooks, click-to-dial, transfer
and recording through its API.

``PLUGIN`` is what the core finds under the ``cti.pbx_adapters`` entry point; the
adapter's own modules load only when one is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cti.pbx import PbxContext, PbxPlugin
from pbx_adapters.cloud.mango.settings import MangoSettings

if TYPE_CHECKING:
    from pbx_adapters.cloud.mango.adapter import MangoAdapter


def build(settings: MangoSettings, context: PbxContext) -> MangoAdapter:
    from pbx_adapters.cloud.mango.adapter import MangoAdapter

    return MangoAdapter(settings, context)


PLUGIN = PbxPlugin(settings=MangoSettings, build=build)
