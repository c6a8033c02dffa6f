"""Which Asterisk channel is an operator's phone (and whose), and which is the outside world."""

from __future__ import annotations

import re
from functools import lru_cache

from pbx_adapters.asterisk.settings import DEFAULT_EXTENSION_CHANNELS

# Device names (DeviceStateChange, hints) carry no "-0000001a" suffix.
_DEVICE = re.compile(r"^(?:SIP|PJSIP|IAX2|Local)/(?P<ext>[0-9]{2,6})(?:@[^/]*)?$")


class ChannelMap:
    """Maps channel names to operator extensions by configurable patterns.

    A channel that matches a trunk pattern, or no extension pattern, is not an operator:
    it is the outside world (a trunk, a fax line, an IVR).
    """

    def __init__(
        self,
        extension_patterns: list[str] | None = None,
        trunk_patterns: list[str] | None = None,
    ) -> None:
        patterns = extension_patterns or DEFAULT_EXTENSION_CHANNELS
        self._extensions = [re.compile(p) for p in patterns]
        self._trunks = [re.compile(p) for p in (trunk_patterns or [])]
        # Channel names repeat in every frame of a call: remember the answer.
        self.extension_of = lru_cache(maxsize=4096)(self._extension_of)

    def _extension_of(self, channel: str) -> str | None:
        if not channel:
            return None
        for pattern in self._trunks:
            if pattern.search(channel):
                return None
        for pattern in self._extensions:
            match = pattern.search(channel)
            if match:
                return match.group("ext")
        return None

    def extension_of_device(self, device: str) -> str | None:
        # Trunk patterns are written for channel names; give the device a channel's tail.
        for pattern in self._trunks:
            if pattern.search(device + "-0;1"):
                return None
        match = _DEVICE.match(device)
        return match.group("ext") if match else None
