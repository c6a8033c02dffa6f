"""Modem errors: ``+CMS ERROR`` (SMS, 3GPP TS 27.005 §3.2.5) and ``+CME ERROR`` (equipment,
TS 27.007 §9.2) codes in words, and whether trying again later can help.

Transient: the network, congestion, a busy SIM, timeouts, "unknown" (500, 100) and the
vendor range (512 and up: mostly lower-layer and "busy, try again" failures on Quectel,
SIMCom and Huawei). Permanent: a bad number or PDU, barring, a missing subscription, PIN
and PUK problems: sending the same thing again would fail the same way.
"""

from __future__ import annotations

import re
from typing import Literal

ErrorKind = Literal["cms", "cme", "plain", "timeout"]

CMS_ERRORS: dict[int, str] = {
    1: "unassigned number",
    8: "operator determined barring",
    10: "call barred",
    21: "short message transfer rejected",
    27: "destination out of service",
    28: "unidentified subscriber",
    29: "facility rejected",
    30: "unknown subscriber",
    38: "network out of order",
    41: "temporary failure",
    42: "congestion",
    47: "resources unavailable",
    50: "requested facility not subscribed",
    69: "requested facility not implemented",
    81: "invalid short message transfer reference value",
    95: "invalid message",
    96: "invalid mandatory information",
    97: "message type non-existent or not implemented",
    98: "message not compatible with short message protocol state",
    111: "protocol error",
    127: "interworking error",
    128: "telematic interworking not supported",
    129: "short message type 0 not supported",
    130: "cannot replace short message",
    143: "unspecified TP-PID error",
    144: "data coding scheme (alphabet) not supported",
    145: "message class not supported",
    159: "unspecified TP-DCS error",
    176: "TPDU not supported",
    192: "SC busy",
    193: "no SC subscription",
    194: "SC system failure",
    195: "invalid SME address",
    196: "destination SME barred",
    197: "SM rejected, duplicate SM",
    208: "SIM SMS storage full",
    211: "memory capacity exceeded",
    212: "SIM application toolkit busy",
    300: "ME failure",
    301: "SMS service of ME reserved",
    302: "operation not allowed",
    303: "operation not supported",
    304: "invalid PDU mode parameter",
    305: "invalid text mode parameter",
    310: "SIM not inserted",
    311: "SIM PIN required",
    312: "PH-SIM PIN required",
    313: "SIM failure",
    314: "SIM busy",
    315: "SIM wrong",
    316: "SIM PUK required",
    317: "SIM PIN2 required",
    318: "SIM PUK2 required",
    320: "memory failure",
    321: "invalid memory index",
    322: "memory full",
    330: "SMSC address unknown",
    331: "no network service",
    332: "network timeout",
    340: "no +CNMA acknowledgement expected",
    500: "unknown error",
}
CMS_TRANSIENT = frozenset({27, 38, 41, 42, 47, 192, 194, 212, 300, 314, 331, 332, 500})
CMS_VENDOR = 512  # codes from here up are manufacturer specific

CME_ERRORS: dict[int, str] = {
    0: "phone failure",
    1: "no connection to phone",
    3: "operation not allowed",
    4: "operation not supported",
    5: "PH-SIM PIN required",
    10: "SIM not inserted",
    11: "SIM PIN required",
    12: "SIM PUK required",
    13: "SIM failure",
    14: "SIM busy",
    15: "SIM wrong",
    16: "incorrect password",
    17: "SIM PIN2 required",
    18: "SIM PUK2 required",
    20: "memory full",
    21: "invalid index",
    22: "not found",
    23: "memory failure",
    24: "text string too long",
    25: "invalid characters in text string",
    26: "dial string too long",
    27: "invalid characters in dial string",
    30: "no network service",
    31: "network timeout",
    32: "network not allowed, emergency calls only",
    100: "unknown",
}
CME_TRANSIENT = frozenset({0, 14, 30, 31, 100})

# Final results of ATD/ATA: the other side, not the modem; calling later may work.
CALL_RESULTS = frozenset({"NO CARRIER", "BUSY", "NO ANSWER", "NO DIALTONE"})
_ERROR_LINE = re.compile(r"^\+(CMS|CME) ERROR:\s*(.*)$", re.IGNORECASE)


class ModemError(Exception):
    """The modem refused or did not answer a command."""

    def __init__(self, kind: ErrorKind, code: int | None, message: str, transient: bool) -> None:
        super().__init__(kind, code, message, transient)
        self.kind = kind
        self.code = code
        self.message = message
        self.transient = transient

    def __str__(self) -> str:
        if self.kind in ("cms", "cme"):
            code = "" if self.code is None else f" {self.code}"
            return f"+{self.kind.upper()} ERROR{code}: {self.message}"
        return self.message

    @classmethod
    def coded(cls, kind: Literal["cms", "cme"], code: int) -> ModemError:
        if kind == "cms":
            message = CMS_ERRORS.get(code) or (
                f"vendor error {code}" if code >= CMS_VENDOR else f"error {code}"
            )
            return cls(kind, code, message, code in CMS_TRANSIENT or code >= CMS_VENDOR)
        return cls(kind, code, CME_ERRORS.get(code, f"error {code}"), code in CME_TRANSIENT)

    @classmethod
    def timeout(cls, seconds: float) -> ModemError:
        return cls("timeout", None, f"no answer within {seconds:g} s", transient=True)


def parse_error(line: str) -> ModemError | None:
    """The error a final result line stands for; None for anything else (``OK`` too).

    ``+CMS/+CME ERROR`` come with a number (AT+CMEE=1) or in words (AT+CMEE=2); words
    are mapped back to the code when the table knows them.
    """
    if line == "ERROR" or line == "COMMAND NOT SUPPORT":  # the latter: Huawei
        return ModemError("plain", None, line.lower(), transient=False)
    if line in CALL_RESULTS:
        return ModemError("plain", None, line.lower(), transient=True)
    match = _ERROR_LINE.match(line)
    if match is None:
        return None
    kind = "cms" if match[1].upper() == "CMS" else "cme"
    detail = match[2].strip()
    if detail.isdigit():
        return ModemError.coded(kind, int(detail))
    table = CMS_ERRORS if kind == "cms" else CME_ERRORS
    for code, words in table.items():
        if words.lower() == detail.lower():
            return ModemError.coded(kind, code)
    return ModemError(kind, None, detail, transient=False)
