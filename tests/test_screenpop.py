"""Screen-pop cards from call events (sans-I/O)."""

from cti.domain import Direction, Outcome
from cti.events import CallAnswered, CallEnded, CallIdentified, CallRinging, CallTransferred
from cti.screenpop import PopBoard, display_number

MATCH = {
    "client_id": "7",
    "client_name": "შპს თბილისი",
    "kind": "company",
    "contact_name": "Нино",
    "manager": {"name": "Giorgi", "extension": "102", "phone": None, "user_id": 3},
    "tags": ["VIP"],
    "crm_url": "https://crm.example/7",
}


def ringing(extension: str, call_id: str = "c1") -> CallRinging:
    return CallRinging(
        call_id=call_id,
        extension=extension,
        direction=Direction.INBOUND,
        external_number="+78125550104",
        external_name="Мария",
    )


def identified(match, *, unavailable: bool = False, extension: str = "101") -> CallIdentified:
    return CallIdentified(
        call_id="c1",
        extension=extension,
        number="+78125550104",
        match=match,
        unavailable=unavailable,
    )


def test_ring_group_card_from_ringing_to_answered_to_ended() -> None:
    board = PopBoard()
    first = board.feed(ringing("101")).to_dict()
    assert first["state"] == "ringing" and first["ringing"] == ["101"]
    assert first["number_display"] == "+7 812 555-01-04" and first["caller_name"] == "Мария"
    assert board.feed(ringing("102")).ringing == ["101", "102"]
    assert board.feed(ringing("102")) is None  # nothing new
    answered = board.feed(CallAnswered(call_id="c1", extension="102")).to_dict()
    assert (answered["state"], answered["answered_by"], answered["ringing"]) == (
        "answered",
        "102",
        [],
    )
    assert answered["extensions"] == ["101", "102"]
    moved = board.feed(
        CallTransferred(call_id="c1", kind="blind", from_extension="102", to_extension="105")
    )
    assert moved.extensions == ["101", "102", "105"]
    ended = board.feed(CallEnded(call_id="c1", outcome=Outcome.ANSWERED)).to_dict()
    assert (ended["state"], ended["outcome"], ended["missed"]) == ("ended", "answered", False)
    assert board.cards == {}
    assert board.feed(CallAnswered(call_id="c1", extension="101")) is None


def test_directory_answer_fills_the_card_and_a_later_failure_does_not_erase_it() -> None:
    board = PopBoard()
    board.feed(ringing("101"))
    card = board.feed(identified(MATCH)).to_dict({"102": "in_use"}.get)
    assert card["lookup"] == "found"
    assert card["client"] == {
        "id": "7",
        "name": "შპს თბილისი",
        "kind": "company",
        "tags": ["VIP"],
        "crm_url": "https://crm.example/7",
    }
    assert card["contact"] == "Нино"
    assert card["manager"] == {"name": "Giorgi", "extension": "102", "line_state": "in_use"}
    assert board.feed(identified(None, unavailable=True, extension="102")) is None
    assert board.cards["c1"].lookup == "found"


def test_unknown_then_late_answer() -> None:
    board = PopBoard()
    board.feed(ringing("101"))
    assert board.feed(identified(None, unavailable=True)).lookup == "unavailable"
    assert board.feed(identified(None)).lookup == "unknown"
    assert board.feed(identified(MATCH)).lookup == "found"


def test_enrich_only_reports_a_change() -> None:
    board = PopBoard()
    board.feed(ringing("101"))
    history = [{"kind": "call", "ref": "x"}]
    assert board.enrich("c1", history, []).history == history
    assert board.enrich("c1", history, []) is None
    assert board.enrich("gone", history, []) is None


def test_fax_machine_answering_changes_nothing() -> None:
    board = PopBoard()
    board.feed(ringing("101"))
    assert board.feed(CallAnswered(call_id="c1", extension=None)) is None


def test_display_number() -> None:
    assert display_number("+995322123456") == "+995 32 212 34 56"
    assert display_number("anonymous") == "anonymous"
    assert display_number(None) is None


def test_a_click_to_dial_card_is_answered_when_the_number_called_answers() -> None:
    """Issue 15, D7: it stayed "ringing" through the whole conversation."""
    board = PopBoard()
    board.feed(
        CallRinging(
            call_id="c2d", extension="101", direction=Direction.OUTBOUND, external_number=None
        )
    )
    card = board.feed(CallAnswered(call_id="c2d", extension=None, involved_extensions=("101",)))
    assert card is not None and card.to_dict()["state"] == "answered"
    inbound = PopBoard()
    inbound.feed(ringing("101"))
    assert inbound.feed(CallAnswered(call_id="c1", extension=None)) is None  # a fax machine
