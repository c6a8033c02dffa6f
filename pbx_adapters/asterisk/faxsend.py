"""Faxes we asked Asterisk to send, sans-I/O: AMI frames in, ``FaxAttempt`` results out.

The adapter originates the far end's channel into a context that runs
``SendFAX(${FAXFILE})``. The ``OriginateResponse`` to our ActionID says whether the far
end answered (busy, no answer: the dial failed) and names the channel; SendFAX then sets
FAXSTATUS, FAXERROR, FAXSTATUSSTRING and FAXPAGES on it and raises ``SendFAX`` (pages,
the far end's station id); the channel's ``Hangup`` closes the attempt.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cti.events import FaxAttempt
from pbx_adapters.asterisk.frames import Frame


@dataclass
class _Send:
    request_id: str
    variables: dict[str, str] = field(default_factory=dict)
    pages: int | None = None
    station: str | None = None


class FaxSender:
    def __init__(self) -> None:
        self._by_action: dict[str, str] = {}  # ActionID -> request id
        self._by_channel: dict[str, _Send] = {}  # Uniqueid of the far end's channel

    def expect(self, action_id: str, request_id: str) -> None:
        self._by_action[action_id] = request_id

    def owns(self, action_id: str) -> bool:
        return action_id in self._by_action

    def dial_failed(self, action_id: str, code: str, reason: str) -> FaxAttempt | None:
        """The Originate did not reach the far end (busy, no answer, refused, link)."""
        request_id = self._by_action.pop(action_id, None)
        if request_id is None:
            return None
        return FaxAttempt(request_id=request_id, success=False, code=code, reason=reason)

    def answered(self, action_id: str, uniqueid: str) -> FaxAttempt | None:
        """The far end answered: the fax is being sent (news, not the result)."""
        request_id = self._by_action.pop(action_id, None)
        if request_id is None or not uniqueid:
            return None
        self._by_channel[uniqueid] = _Send(request_id)
        return FaxAttempt(
            request_id=request_id, success=False, code="sending", connected=True, final=False
        )

    def feed(self, frame: Frame) -> FaxAttempt | None:
        send = self._by_channel.get(frame.get("Uniqueid", ""))
        if send is None:
            return None
        event = frame.get("Event")
        if event == "VarSet" and frame.get("Variable", "").startswith("FAX"):
            send.variables[frame["Variable"]] = frame.get("Value", "")
        elif event == "SendFAX":
            send.pages = _int(frame.get("PagesTransferred"))
            send.station = frame.get("RemoteStationID", "").strip() or None
        elif event == "Hangup":
            del self._by_channel[frame["Uniqueid"]]
            return self._result(send)
        return None

    def _result(self, send: _Send) -> FaxAttempt:
        found = send.variables
        success = found.get("FAXSTATUS") == "SUCCESS"
        pages = send.pages if send.pages is not None else _int(found.get("FAXPAGES"))
        words = [found.get("FAXSTATUSSTRING", ""), found.get("FAXERROR", "")]
        reason = "" if success else " / ".join(w for w in words if w) or "no fax was sent"
        return FaxAttempt(
            request_id=send.request_id,
            success=success,
            code="" if success else "failed",
            reason=reason,
            connected=True,
            pages=pages,
            remote_station=send.station,
        )

    def link_lost(self) -> list[FaxAttempt]:
        """Faxes being sent when the link went: the PBX may well finish them, so their
        outcome is unknown (never "try again": that could send a fax twice)."""
        lost = [
            FaxAttempt(
                request_id=send.request_id,
                success=False,
                code="unknown",
                reason="the link to the PBX dropped while the fax was being sent",
                connected=True,
            )
            for send in self._by_channel.values()
        ]
        self._by_channel.clear()
        return lost


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None
