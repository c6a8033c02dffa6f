"""Zadarma and Novofon (one API): live screen pops from their notifications, click-to-dial
and recordings through their API.

``PLUGIN`` is what the core finds under the ``cti.pbx_adapters`` entry point; the
adapter's own modules load only when one is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cti.pbx import PbxContext, PbxPlugin
from pbx_adapters.cloud.zadarma.settings import ZadarmaSettings

if TYPE_CHECKING:
    from pbx_adapters.cloud.zadarma.adapter import ZadarmaAdapter


def build(settings: ZadarmaSettings, context: PbxContext) -> ZadarmaAdapter:
    from pbx_adapters.cloud.zadarma.adapter import ZadarmaAdapter

    return ZadarmaAdapter(settings, context)


PLUGIN = PbxPlugin(settings=ZadarmaSettings, build=build)
