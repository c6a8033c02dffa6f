"""The outside numbers in call records, in E.164 for the office's region."""

from __future__ import annotations

from dataclasses import dataclass

from cti.phone import to_e164


@dataclass(frozen=True)
class NumberRules:
    region: str
    trunk_prefixes: tuple[str, ...] = ()  # digits the PBX dials out that are not the number

    def outside(self, digits: str) -> str:
        """The E.164 form of a number dialled out (else the digits as printed)."""
        for prefix in sorted(self.trunk_prefixes, key=len, reverse=True):
            if prefix and digits.startswith(prefix) and len(digits) > len(prefix) + 2:
                digits = digits[len(prefix) :]
                break
        return to_e164(digits, self.region) or digits

    def caller(self, number: str) -> str:
        return to_e164(number, self.region) or number
