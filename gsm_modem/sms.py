"""SMS between the core and a modem in PDU mode: the core's text-level interface
(``cti.modem``) on top of the PDU codec (``pdu.py``) and the driver's AT+CMGS.

Outgoing, ``SmsOverPdu`` (a base of ``GsmModem``) makes the core's ``SmsModem`` of
anything with a ``send_pdu``: a text is split into SMS-SUBMIT PDUs, and the modem's
refusals are told apart the way the outbox needs (a timeout: the PDU was written and may
have gone out). Incoming, ``read`` turns a PDU the modem gave into a ``ReceivedPart`` or
a ``DeliveryReport`` for the core to store and reassemble.
"""

from __future__ import annotations

from cti.modem import (
    DeliveryReport,
    ModemNoAnswer,
    ModemRefused,
    ReceivedPart,
    SmsTextError,
)
from gsm_modem.errors import ModemError
from gsm_modem.pdu import (
    PduError,
    StatusReport,
    Submit,
    SubmitPart,
    decode,
    encode_submit,
    sms_parts_needed,
)


class GsmCodec:
    """The core's ``SmsCodec`` for GSM: 7-bit when the alphabet has every character, else
    UCS-2; 160 / 70 characters in one part, 153 / 67 in each of several."""

    def parts_needed(self, text: str) -> tuple[str, int]:
        try:
            return sms_parts_needed(text)
        except PduError as e:
            raise SmsTextError(str(e)) from None


GSM_CODEC = GsmCodec()


class SmsOverPdu(GsmCodec):
    """``split`` and ``send_part`` for a modem in PDU mode, around its ``send_pdu``."""

    async def send_pdu(self, pdu_hex: str, tpdu_length: int) -> int:
        """One SMS-SUBMIT through AT+CMGS; its message reference (TP-MR)."""
        raise NotImplementedError

    def split(
        self, number: str, text: str, *, concat_ref: int, status_report: bool
    ) -> list[SubmitPart]:
        try:
            return encode_submit(number, text, reference=concat_ref, status_report=status_report)
        except PduError as e:
            raise SmsTextError(str(e)) from None

    async def send_part(self, part: SubmitPart) -> int:
        try:
            return await self.send_pdu(part.hex, part.tpdu_length)
        except ModemError as e:  # ModemUnavailable is the core's already
            if e.kind == "timeout":  # written, never confirmed
                raise ModemNoAnswer(str(e)) from e
            raise ModemRefused(e.message, transient=e.transient) from e


def read(pdu_hex: str) -> ReceivedPart | DeliveryReport | None:
    """What a PDU from the modem (AT+CMGR, AT+CMGL, +CMT, +CDS) says, in the core's
    terms; None for a message stored for sending (not one received). PduError (a
    ValueError) when it cannot be read."""
    message = decode(pdu_hex)
    if isinstance(message, StatusReport):
        return delivery_report(message)
    if isinstance(message, Submit):
        return None
    concat = message.concat
    return ReceivedPart(
        sender=message.sender,
        text=message.text or "",  # 8-bit data: nothing to show
        sent_at=message.timestamp,
        reference=concat.reference if concat else None,
        seq=concat.seq if concat else 1,
        total=concat.total if concat else 1,
    )


def read_part(pdu_hex: str) -> ReceivedPart | None:
    """A part kept as it came (``SmsInbox.reread``): None for anything else."""
    part = read(pdu_hex)
    return part if isinstance(part, ReceivedPart) else None


def delivery_report(report: StatusReport) -> DeliveryReport:
    return DeliveryReport(
        report.reference, delivered=report.delivered, final=report.final, reason=report.reason
    )
