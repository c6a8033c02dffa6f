"""A scripted PBX, for tests: calls play from a list, with no network and no PBX.

It exists to show that a PBX interface is a package and one entry-point line: nothing
else in the service knows it. ``[[pbx]] type = "scripted"`` with a ``script`` of steps
(ring, answer, transfer, end, line) played after start, each ``after`` seconds after
the previous one; a test may also ``play`` steps itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cti.pbx import PbxContext, PbxPlugin
from pbx_adapters.scripted.settings import ScriptedSettings

if TYPE_CHECKING:
    from pbx_adapters.scripted.adapter import ScriptedAdapter


def build(settings: ScriptedSettings, context: PbxContext) -> ScriptedAdapter:
    from pbx_adapters.scripted.adapter import ScriptedAdapter

    return ScriptedAdapter(settings, context)


PLUGIN = PbxPlugin(settings=ScriptedSettings, build=build)
