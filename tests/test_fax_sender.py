"""The Asterisk adapter's fax sending, sans-I/O, on a transcript recorded from the lab
(tests/fixtures/lab/fax_send.ami: the adapter's own Originate into faxsend)."""

from pathlib import Path

from pbx_adapters.asterisk.adapter import KEPT_EVENTS
from pbx_adapters.asterisk.faxsend import FaxSender
from pbx_adapters.asterisk.frames import AmiParser
from pbx_adapters.asterisk.tracker import CallTracker

TRANSCRIPT = Path(__file__).parent / "fixtures" / "lab" / "fax_send.ami"


def replay(sender: FaxSender) -> list:
    # Filtered as the adapter filters the stream: SendFAX's variables must get through.
    parser = AmiParser(events=KEPT_EVENTS, needles=CallTracker.NEEDLES)
    attempts = []
    for frame in parser.feed(TRANSCRIPT.read_bytes()):
        if frame.get("Event") == "OriginateResponse" and sender.owns(frame.get("ActionID", "")):
            if frame.get("Response") == "Success":
                attempts.append(sender.answered(frame["ActionID"], frame["Uniqueid"]))
            continue
        if (attempt := sender.feed(frame)) is not None:
            attempts.append(attempt)
    return attempts


def test_a_fax_the_lab_sent_is_reported_sent_with_its_pages() -> None:
    sender = FaxSender()
    sender.expect("cti-fax-7-lab", "7")
    progress, result = replay(sender)
    assert (progress.final, progress.code, progress.request_id) == (False, "sending", "7")
    assert (result.final, result.success, result.pages, result.request_id) == (True, True, 2, "7")


def test_a_fax_in_flight_when_the_link_drops_is_unknown_not_retried() -> None:
    sender = FaxSender()
    sender.expect("a", "9")
    sender.answered("a", "123.4")
    [lost] = sender.link_lost()
    assert (lost.code, lost.connected, lost.success) == ("unknown", True, False)


def test_a_dial_that_failed_is_reported_with_its_code() -> None:
    sender = FaxSender()
    sender.expect("b", "10")
    failed = sender.dial_failed("b", "busy", "the fax number: the phone is busy")
    assert (failed.code, failed.connected, failed.request_id) == ("busy", False, "10")
    assert sender.dial_failed("b", "busy", "") is None  # once
