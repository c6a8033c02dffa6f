"""SMDR records as the manuals print them, read into calls: Panasonic KX-TDA/TDE/NS
(fixed-width lines in patterns A, B and C) and Avaya IP Office (CSV segments), the
line splitter, the Panasonic network login, and parsers that never raise."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cti.calls import Call
from pbx_adapters.smdr.avaya.calls import AvayaCalls
from pbx_adapters.smdr.avaya.records import parse_line as parse_avaya
from pbx_adapters.smdr.avaya.simulator import print_day as print_avaya_day
from pbx_adapters.smdr.day import Expected, office_day
from pbx_adapters.smdr.lines import LineSplitter
from pbx_adapters.smdr.numbers import NumberRules
from pbx_adapters.smdr.panasonic.calls import PanasonicCalls
from pbx_adapters.smdr.panasonic.login import LoginState, SmdrLogin
from pbx_adapters.smdr.panasonic.records import PanasonicRecord
from pbx_adapters.smdr.panasonic.records import parse_line as parse_panasonic
from pbx_adapters.smdr.panasonic.simulator import print_day as print_panasonic_day
from pbx_adapters.smdr.panasonic.simulator import record
from pbx_adapters.smdr.records import Rejected, Skipped

MOSCOW = ZoneInfo("Europe/Moscow")
DAY = datetime(2026, 12, 1)


def panasonic(**options) -> PanasonicCalls:
    rules = NumberRules("RU", tuple(options.pop("trunk_prefixes", ())))
    return PanasonicCalls("pana", rules, MOSCOW, date_order=options.pop("date_order", "DMY"))


def avaya() -> AvayaCalls:
    return AvayaCalls("ipo", NumberRules("RU", ("9",)), MOSCOW)


def calls_of(decoder, lines: list[str]) -> list[Call]:
    out = [item for line in lines for item in decoder.feed(line)] + decoder.flush()
    return [item for item in out if isinstance(item, Call)]


# -- Panasonic: the fields ------------------------------------------------------------


@pytest.mark.parametrize("pattern", ["A", "B", "C"])
def test_each_pattern_reads_to_the_same_fields(pattern) -> None:
    at = datetime(2026, 12, 1, 14, 7)
    line = record(at, "101", "01", "<I>84957770133", ring=25, talk=65, pattern=pattern)
    parsed = parse_panasonic(line, "DMY")
    assert isinstance(parsed, PanasonicRecord)
    assert (parsed.printed_at, parsed.ext, parsed.dial) == (at, "101", "<I>84957770133")
    assert parsed.co in ("01", "0001")
    assert parsed.duration_seconds == 65
    assert parsed.ring_seconds == (None if pattern == "B" else 25)  # B prints no ring
    assert (parsed.cost is None) == (pattern == "A")


def test_the_manuals_examples_read_field_by_field() -> None:
    parsed = parse_panasonic(
        "01/02/02 10:07AM 1230  0001 <I>ABC COMPANY123456789012345   0'05 00:00'05 "
        "00560.00EUR 9876543210 TR",
        "MDY",
    )
    assert isinstance(parsed, PanasonicRecord)
    assert parsed.printed_at == datetime(2002, 1, 2, 10, 7)
    assert (parsed.co, parsed.cost, parsed.account, parsed.condition) == (
        "0001",
        "00560.00EUR",
        "9876543210",
        "TR",
    )
    assert parse_panasonic("01/02/02 01:07PM 1234  LOG IN", "MDY") == Skipped(
        "01/02/02 01:07PM 1234  LOG IN", "not a call: LOG IN"
    )
    for text in ("Date     Time    Ext   CO  Dial Number", "-" * 80, "   "):
        assert isinstance(parse_panasonic(text), Skipped)


@pytest.mark.parametrize(
    ("date", "order"), [("12/01/26", "MDY"), ("01/12/26", "DMY"), ("26/12/01", "YMD")]
)
def test_the_date_is_read_in_the_country_order(date, order) -> None:
    parsed = parse_panasonic(f"{date} 12:05AM 101   02 84951112233   00:00'10", order)
    assert isinstance(parsed, PanasonicRecord)
    assert parsed.printed_at == datetime(2026, 12, 1, 0, 5)


def test_an_incoming_call_gives_caller_name_number_and_the_ddi_in_e164() -> None:
    line = "01/12/26 10:03AM 101   01 <D>4951000000<I>ИВАНОВ ИВАН84957770133 0'12 00:01'05"
    (call,) = calls_of(panasonic(), [line])
    assert call.direction.value == "inbound"
    assert (call.external_number, call.external_name, call.did) == (
        "+74957770133",
        "ИВАНОВ ИВАН",
        "+74951000000",
    )
    assert call.answered_by == "101" and not call.missed
    # The Time column is the end, to the minute: the call began ring + talk before it.
    assert call.ended_at == datetime(2026, 12, 1, 7, 3, tzinfo=UTC)
    assert (call.wait_seconds, call.talk_seconds) == (12.0, 65.0)
    # Older models print the number first, then the name.
    (call,) = calls_of(panasonic(), ["24/06/26 10:08AM 103   03 <I>84957770133 TOM HUNKS 0'45 NA"])
    assert (call.external_number, call.external_name, call.missed) == (
        "+74957770133",
        "TOM HUNKS",
        True,
    )


@pytest.mark.parametrize(
    ("dial", "number"),
    [
        ("84957770133", "+74957770133"),
        ("8P4957770133", "+74957770133"),  # a pause in the dialling
        ("84957770133P123", "+74957770133"),  # digits for a machine after the pause
        ("0=84957770133", "+74957770133"),  # a host PBX's access code before =
        ("84957770133-25", "+74957770133"),  # digits keyed in after a transfer
        ("849577.....", "849577....."),  # secret dialling: kept as printed
        ("8495777XXXX", "8495777XXXX"),  # privacy dial
        ("984957770133", "+74957770133"),  # the trunk access code, configured
    ],
)
def test_dialled_digits_and_their_marks(dial, number) -> None:
    line = f"01/12/26 10:03AM 101   02 {dial:<25}      00:02'05"
    (call,) = calls_of(panasonic(trunk_prefixes=["9"]), [line])
    assert (call.direction.value, call.caller_extension, call.external_number) == (
        "outbound",
        "101",
        number,
    )
    assert call.outcome.value == "answered"


@pytest.mark.parametrize("ext", ["D101", "T01", "*123"])
def test_doorphone_tie_line_and_verified_code_calls_have_no_extension(ext) -> None:
    (call,) = calls_of(panasonic(), [f"01/12/26 10:03AM {ext:<5} 02 84957770133   00:00'30"])
    assert call.caller_extension is None
    assert call.pbx_ref["record"].split()[2] == ext


def test_what_is_missed_and_what_is_not() -> None:
    lines = [
        "01/12/26 10:03AM 101   01 <I>84957770133           0'25 00:00'00",  # rang, no talk
        "01/12/26 10:04AM 101   01 <I>84957770133           0'30            NA",  # the NA notice
        "01/12/26 10:05AM 101   01 <I>84957770133                00:00'00",  # nothing rang
        "01/12/26 10:06AM 101   01 <I>84957770133           0'05 00:01'00",  # answered
        "01/12/26 10:07AM 101   01 <I>84957770133           0'05            RC",  # notices
        "01/12/26 10:07AM 101   01 <I>84957770133           0'05            AN",
        "01/12/26 10:08AM 101   02 84957770133                   00:00'00",  # dialled, no answer
        "01/12/26 10:09AM 101   01 <I>84957770133           0'05 00:00'00           TR",
        "01/12/26 10:10AM 102   01 <I>84957770133                00:00'40",  # passed on
    ]
    calls = calls_of(panasonic(), lines)
    assert [(c.direction.value, c.outcome.value, c.missed) for c in calls] == [
        ("inbound", "no_answer", True),
        ("inbound", "no_answer", True),
        ("inbound", "unknown", False),
        ("inbound", "answered", False),
        ("outbound", "no_answer", False),
        ("inbound", "answered", False),  # transferred at once: taken, not missed
        ("inbound", "answered", False),
    ]


@pytest.mark.parametrize("order", [0, 1])
def test_a_trunk_to_trunk_transfer_printed_twice_is_one_call(order) -> None:
    pair = [
        "01/12/26 10:03AM 101   01 <I>84957770133           0'05 00:03'05           TR",
        "01/12/26 10:03AM 101   02 89031112233                   00:02'40           TR",
    ]
    (call,) = calls_of(panasonic(), pair if order == 0 else pair[::-1])
    assert call.direction.value == "inbound" and call.answered_by == "101"
    assert [(t.from_extension, t.to) for t in call.transfers] == [("101", "+79031112233")]
    assert "transfer_record" in call.pbx_ref


def test_an_intercom_call_is_internal() -> None:
    (call,) = calls_of(panasonic(), ["01/12/26 10:03AM 101   EXT102  0'04 00:00'50"])
    assert (call.direction.value, call.caller_extension, call.answered_by) == (
        "internal",
        "101",
        "102",
    )


def test_a_record_cut_short_is_rejected_and_the_next_on_its_line_kept() -> None:
    decoder = panasonic()
    cut = "01/12/26 10:03AM 101   01 <I>849"
    whole = "01/12/26 10:04AM 102   01 <I>84957770133   0'05 00:01'00"
    out = decoder.feed(cut + whole)
    assert [type(x) for x in out] == [Rejected, Call]
    assert out[0].line == cut
    clock = decoder.feed("**/**/** **:**** 102   01 <I>84951112233        **'** **:**'**")
    assert isinstance(clock[0], Rejected) and "clock" in clock[0].reason


def test_the_same_record_is_the_same_call() -> None:
    line = "01/12/26 10:03AM 101   01 <I>84957770133   0'05 00:01'00"
    first, second = calls_of(panasonic(), [line]), calls_of(panasonic(), ["  " + line + "  "])
    assert first[0].id == second[0].id
    other = calls_of(panasonic(), [line.replace("101 ", "102 ")])
    assert other[0].id != first[0].id


# -- Avaya ------------------------------------------------------------------------------

# The IP Office manual's examples (fields 1-17), and R11's 35 fields.
LOST = (
    "2008/06/28 09:28:41,00:00:00,9,8004206,I,4324,4324,,0,1000014155,0,"
    "E4324,Joe Bloggs,T9161,LINE 5.1,0,0"
)
TO_VOICEMAIL = [
    "2008/06/28 09:30:57,00:00:13,7,01707392200,I,299999,299999,,0,1000014160,1,"
    "E4750,John Smith,T9002,LINE 1.2,11,0",
    "2008/06/28 09:30:57,00:00:21,0,01707392200,I,299999,299999,,0,1000014160,0,"
    "V9502,VM Channel 2,T9002,LINE 1.2,0,0",
]
INTERNAL = (
    "2008/06/26 10:27:44,00:00:44,4,4688,O,4207,4207,,1,1000013898,0,"
    "E4688,Joe Bloggs,E4207,John Smith,0,0"
)


def test_avaya_fields_and_the_total_duration() -> None:
    decoder = AvayaCalls("ipo", NumberRules("GB"), ZoneInfo("Europe/London"))
    lost, transferred, internal = calls_of(decoder, [LOST, *TO_VOICEMAIL, INTERNAL])
    assert (lost.direction.value, lost.missed, lost.wait_seconds, lost.did) == (
        "inbound",
        True,
        9.0,
        "4324",
    )
    # Answered by 4750, then sent to voicemail: answered (not missed), voicemail noted.
    assert (transferred.answered_by, transferred.missed, transferred.pbx_ref["voicemail"]) == (
        "4750",
        False,
        "V9502",
    )
    assert transferred.external_number == "+441707392200"
    # total = connected + ring + hold + park, over both segments
    assert (transferred.ended_at - transferred.started_at).total_seconds() == 13 + 7 + 11 + 21
    assert (internal.direction.value, internal.caller_extension, internal.answered_by) == (
        "internal",
        "4688",
        "4207",
    )


def test_avaya_r11_records_and_cyrillic_names_read_as_the_older_ones() -> None:
    day = print_avaya_day(office_day(DAY, 20))
    r11 = [line for line in day.lines if line.count(",") == 34]
    assert r11, "the simulated day has R11 records"
    assert any("Анна" in line for line in day.lines)
    assert [Expected.of(c) for c in calls_of(avaya(), day.lines)] == day.expected


def test_avaya_segments_wait_for_the_last_and_a_resent_segment_is_not_counted_twice() -> None:
    decoder = avaya()
    assert decoder.feed(TO_VOICEMAIL[0]) == []
    assert isinstance(decoder.feed(TO_VOICEMAIL[0])[0], Skipped)
    assert decoder.flush() == []  # a Continuation of 1 promises more
    (call,) = decoder.feed(TO_VOICEMAIL[1])
    assert len(call.pbx_ref["records"].splitlines()) == 2


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("2026/12/01 10:20:23,00:00:00,12,84997", "fields"),
        ("2026/13/45 99:99:99,00:00:00,0,,I,,,,0,1,0,E101,,T9001,,0,0", "Call Start"),
        (LOST.replace(",I,", ",X,"), "Direction"),
        (LOST.replace("00:00:00", "0:0"), "Connected Time"),
        (LOST.replace(",1000014155,", ",abc,"), "Call ID"),
    ],
)
def test_avaya_lines_it_cannot_read_say_why(line, why) -> None:
    parsed = parse_avaya(line)
    assert isinstance(parsed, Rejected) and why in parsed.reason


# -- a day of each, at once or in pieces ---------------------------------------------


def test_a_panasonic_day_is_the_right_call_log() -> None:
    day = print_panasonic_day(office_day(DAY, 300))
    assert len(day.expected) >= 300 and day.bad_lines >= 4
    assert [Expected.of(c) for c in calls_of(panasonic(), day.lines)] == day.expected


def test_an_avaya_day_is_the_right_call_log() -> None:
    day = print_avaya_day(office_day(DAY, 300))
    assert [Expected.of(c) for c in calls_of(avaya(), day.lines)] == day.expected


@pytest.mark.parametrize("chunk", [1, 7, 4096])
@pytest.mark.parametrize("dialect", ["panasonic", "avaya"])
def test_a_day_in_bytes_of_any_size_gives_the_calls_of_its_lines(chunk, dialect) -> None:
    if dialect == "panasonic":
        day, encoding, decoder = print_panasonic_day(office_day(DAY, 300)), "cp866", panasonic
    else:
        day, encoding, decoder = print_avaya_day(office_day(DAY, 300)), "utf-8", avaya
    stream = "".join(line + "\r\n" for line in day.lines).encode(encoding)
    splitter, pieces = LineSplitter(encoding), decoder()
    calls = []
    for start in range(0, len(stream), chunk):
        for line in splitter.feed(stream[start : start + chunk]):
            calls += [x for x in pieces.feed(line) if isinstance(x, Call)]
    calls += [x for x in pieces.flush() if isinstance(x, Call)]
    assert [c.to_dict() for c in calls] == [c.to_dict() for c in calls_of(decoder(), day.lines)]
    assert len(calls) == len(day.expected) >= 300


def test_the_line_splitter_takes_any_line_end_and_bounds_a_line_that_never_ends() -> None:
    splitter = LineSplitter("utf-8", max_line=50)
    assert splitter.feed(b"one\r") == ["one"]
    assert splitter.feed(b"\ntwo\nthr") == ["two"]
    assert splitter.feed(b"ee\x00\x13\f\n\n") == ["three"]
    assert splitter.feed(b"x" * 60) == ["x" * 60]
    assert splitter.feed(b"part") == [] and splitter.reset() == b"part"


# -- the Panasonic network login ------------------------------------------------------


def test_the_login_answers_user_and_password_and_declines_telnet_options() -> None:
    login = SmdrLogin("SMDR", "secret")
    reply, stream = login.receive(b"\xff\xfd\x01\r\nKX-NS1000\r\nUser ID: ")
    assert reply == b"\xff\xfc\x01SMDR\r\n" and stream == b""
    assert login.receive(b"Password: ") == (b"secret\r\n", b"")
    assert login.ready and not login.refused
    record_bytes = b"01/12/26 10:03AM 101   01 <I>84957770133   0'05 00:01'00\r\n"
    assert login.receive(record_bytes) == (b"", record_bytes)
    assert login.state is LoginState.DONE


def test_a_wrong_password_is_refused() -> None:
    login = SmdrLogin("SMDR", "wrong")
    login.receive(b"User ID: ")
    login.receive(b"Password: ")
    login.receive(b"\r\nLogin incorrect\r\nUser ID: ")
    assert login.refused == "the PBX refused the SMDR password"


# -- never a crash ------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_the_panasonic_reader_never_raises(text) -> None:
    for item in panasonic().feed(text) + panasonic(date_order="MDY").feed(text):
        assert isinstance(item, (Call, Skipped, Rejected))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.text(max_size=12),
            st.sampled_from(
                ["2026/12/01 10:00:00", "00:01:00", "I", "O", "0", "1", "E101", "T9001"]
            ),
        ),
        max_size=36,
    )
)
def test_the_avaya_reader_never_raises(fields) -> None:
    decoder = avaya()
    for item in decoder.feed(",".join(fields)):
        assert isinstance(item, (Call, Skipped, Rejected))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_the_login_never_raises(data) -> None:
    login = SmdrLogin("SMDR", "x")
    for piece in (data[:50], data[50:]):
        login.receive(piece)
