"""The sans-I/O AT engine: framing across any split, echo, prompt, URCs, timeouts, errors."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cti.text import text_problem
from gsm_modem.at import AtEngine, CommandResult, UnexpectedLine, Urc, Write, split_args
from gsm_modem.errors import ModemError, parse_error

# Published SMS-DELIVER: "hellohello" from +27838890001.
DELIVER = "07917283010010F5040BC87238880900F10000993092516195800AE8329BFD4697D9EC37"
SUBMIT = "0031000B919761989901F00000AA0AE8329BFD4697D9EC37"
REPORT = "0006010B919761989901F0621132204224006211322042240000"


def run(command: str, chunks: list[bytes], pdu: str | None = None) -> list:
    engine = AtEngine()
    assert engine.command(command, timeout=10, now=0, pdu=pdu) == command.encode() + b"\r"
    events = []
    for chunk in chunks:
        events += engine.receive(chunk)
    assert engine.pending is None
    return events


def result(command: str, *lines: str) -> CommandResult:
    return CommandResult(command, list(lines), True, None)


# (command, PDU to send, what the modem says, the events expected)
TRANSCRIPTS = [
    pytest.param(
        "AT+CSQ",
        None,
        b'AT+CSQ\r\r\n+CSQ: 20,99\r\n\r\n+CMTI: "SM",3\r\n\r\nOK\r\n',
        [Urc("+CMTI", ["SM", "3"], '+CMTI: "SM",3'), result("AT+CSQ", "+CSQ: 20,99")],
        id="echo-urc-mid-response",
    ),
    pytest.param(
        "AT+CMGS=23",
        SUBMIT,
        b"AT+CMGS=23\r\r\n> "
        + SUBMIT.encode()
        + b"\x1a\r\n+CDS: 25\r\n"
        + REPORT.encode()
        # A vendor URC with no space after the colon, then the answer.
        + b"\r\n^RSSI:18\r\n\r\n+CMGS: 7\r\n\r\nOK\r\n",
        [
            Write(SUBMIT.encode() + b"\x1a"),
            Urc("+CDS", ["25"], "+CDS: 25", REPORT),
            Urc("^RSSI", ["18"], "^RSSI:18"),
            result("AT+CMGS=23", "+CMGS: 7"),
        ],
        id="prompt-pdu-echo-status-report",
    ),
    pytest.param(
        "AT+CMGR=3",
        None,
        b"\r\n+CMGR: 0,,35\r\n" + DELIVER.encode() + b'\r\n\r\nRING\r\n\r\n+CLIP: "+79161234567"'
        b',145,"",0,"",0\r\n\r\nOK\r\n',
        [
            Urc("RING", [], "RING"),
            Urc(
                "+CLIP",
                ["+79161234567", "145", "", "0", "", "0"],
                '+CLIP: "+79161234567",145,"",0,"",0',
            ),
            result("AT+CMGR=3", "+CMGR: 0,,35", DELIVER),
        ],
        id="read-with-ring",
    ),
    pytest.param(
        "AT+CMGL=4",
        None,
        b"\r\n+CMGL: 1,1,,35\r\n"
        + DELIVER.encode()
        + b"\r\n^BOOT:1,0,0,0,0\r\n+CMGL: 4,0,,35\r"
        + DELIVER.encode()
        + b"\r\n\r\nCall Ready\r\n\r\nOK\r\n",
        [
            Urc("^BOOT", ["1", "0", "0", "0", "0"], "^BOOT:1,0,0,0,0"),
            Urc("Call Ready", [], "Call Ready"),
            result("AT+CMGL=4", "+CMGL: 1,1,,35", DELIVER, "+CMGL: 4,0,,35", DELIVER),
        ],
        id="list-with-vendor-urcs",
    ),
    pytest.param(
        "AT+CREG?",
        None,
        b'\r\n+CREG: 5\r\n\r\n+CREG: 1,"00C3","0010"\r\n\r\n+CREG: 1,5\r\n\r\nOK\r\n',
        [
            Urc("+CREG", ["5"], "+CREG: 5"),
            Urc("+CREG", ["1", "00C3", "0010"], '+CREG: 1,"00C3","0010"'),
            result("AT+CREG?", "+CREG: 1,5"),
        ],
        id="registration-urc-vs-answer",
    ),
    pytest.param(
        "AT+CMGS=23",
        SUBMIT,
        b"\r\n> \r\n+CMS ERROR: 38\r\n",
        [
            Write(SUBMIT.encode() + b"\x1a"),
            CommandResult("AT+CMGS=23", [], False, ModemError.coded("cms", 38)),
        ],
        id="send-refused-after-prompt",
    ),
]


@pytest.mark.parametrize(("command", "pdu", "data", "expected"), TRANSCRIPTS)
def test_every_split_gives_the_same_events(
    command: str, pdu: str | None, data: bytes, expected: list
) -> None:
    """Every way to cut the stream in one or two places: mid-line, mid-CRLF, mid-prompt."""
    for i in range(len(data) + 1):
        for j in range(i, len(data) + 1):
            events = run(command, [data[:i], data[i:j], data[j:]], pdu)
            assert _comparable(events) == _comparable(expected), (i, j)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_any_chunking_gives_the_same_events(data: st.DataObject) -> None:
    command, pdu, stream, expected = data.draw(st.sampled_from([p.values for p in TRANSCRIPTS]))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=30)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    assert _comparable(run(command, chunks, pdu)) == _comparable(expected)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=20))
def test_line_noise_never_breaks_the_engine(chunks: list[bytes]) -> None:
    engine = AtEngine()
    engine.command("AT+CSQ", timeout=1, now=0)
    for chunk in chunks:
        for event in engine.receive(chunk):
            for text in [*getattr(event, "lines", ()), getattr(event, "line", "")]:
                assert isinstance(text, str) and text_problem(text) is None
    engine.check_timeouts(1)
    engine.command("AT", timeout=1, now=1)
    events = engine.receive(b"\r\nOK\r\n")
    assert engine.pending is None
    assert [e.command for e in events if isinstance(e, CommandResult)] == ["AT"]


def _comparable(events: list) -> list:
    # ModemError compares by identity; compare its fields instead.
    return [
        (e.command, e.lines, e.ok, e.error and (e.error.kind, e.error.code))
        if isinstance(e, CommandResult)
        else e
        for e in events
    ]


def test_echo_off_answer() -> None:
    assert run("AT+CGSN", [b"\r\n356938035643809\r\n\r\nOK\r\n"]) == [
        result("AT+CGSN", "356938035643809")
    ]


def test_one_command_at_a_time_and_single_lines_only() -> None:
    engine = AtEngine()
    engine.command("AT+CSQ", timeout=1, now=0)
    with pytest.raises(RuntimeError):
        engine.command("AT+COPS?", timeout=1, now=0)
    with pytest.raises(ValueError, match="single"):
        AtEngine().command("AT+CMGD=1\rAT+CMGD=2", timeout=1, now=0)
    with pytest.raises(ValueError, match="hex"):
        AtEngine().command("AT+CMGS=5", timeout=1, now=0, pdu="00\x1aAT")


def test_timeout_frees_the_engine_and_late_answers_are_unexpected() -> None:
    engine = AtEngine()
    engine.command("AT+COPS?", timeout=5, now=100)
    assert engine.deadline == 105
    assert engine.check_timeouts(104.9) == []
    [timed_out] = engine.check_timeouts(105)
    assert (timed_out.command, timed_out.ok) == ("AT+COPS?", False)
    assert timed_out.error is not None
    assert (timed_out.error.kind, timed_out.error.transient) == ("timeout", True)
    assert engine.pending is None and engine.deadline is None
    assert engine.receive(b'\r\n+COPS: 0,0,"MegaFon",2\r\n\r\nOK\r\n') == [
        Urc("+COPS", ["0", "0", "MegaFon", "2"], '+COPS: 0,0,"MegaFon",2'),
        UnexpectedLine("OK"),
    ]
    engine.command("AT", timeout=5, now=106)
    assert engine.receive(b"\r\nOK\r\n") == [result("AT")]


def test_a_pdu_command_refused_or_timed_out_before_its_prompt() -> None:
    assert run("AT+CMGS=23", [b"\r\n+CMS ERROR: 311\r\n"], SUBMIT)[0].error.code == 311
    engine = AtEngine()
    engine.command("AT+CMGS=23", timeout=60, now=0, pdu=SUBMIT)
    write, timed_out = engine.check_timeouts(60)
    assert write == Write(b"\x1b")  # a prompt coming late must not swallow the next command
    assert timed_out.error.kind == "timeout"


def test_unsolicited_while_idle() -> None:
    engine = AtEngine()
    assert engine.receive(b"\r\nRING\r\n\r\n+CMT: ,35\r\n" + DELIVER.encode() + b"\r\n") == [
        Urc("RING", [], "RING"),
        Urc("+CMT", ["", "35"], "+CMT: ,35", DELIVER),
    ]
    # A +CDS header whose PDU line never came: reported, and the next line still counts.
    assert engine.receive(b'\r\n+CDS: 25\r\n+CDSI: "SM",2\r\n') == [
        UnexpectedLine("+CDS: 25"),
        Urc("+CDSI", ["SM", "2"], '+CDSI: "SM",2'),
    ]


def test_call_results_end_only_dialling() -> None:
    dial = run("ATD+79161234567;", [b"\r\nBUSY\r\n"])
    assert dial[0].error.kind == "plain" and dial[0].error.message == "busy"
    events = run("AT+CSQ", [b"\r\nNO CARRIER\r\n+CSQ: 9,99\r\nOK\r\n"])
    assert events == [Urc("NO CARRIER", [], "NO CARRIER"), result("AT+CSQ", "+CSQ: 9,99")]


def test_clip_answer_versus_caller_id() -> None:
    events = run("AT+CLIP?", [b'\r\n+CLIP: "+79161234567",145\r\n+CLIP: 1,1\r\nOK\r\n'])
    assert events == [
        Urc("+CLIP", ["+79161234567", "145"], '+CLIP: "+79161234567",145'),
        result("AT+CLIP?", "+CLIP: 1,1"),
    ]


def test_cme_error_ends_the_command() -> None:
    [done] = run("AT+CPIN=0000", [b"AT+CPIN=0000\r\r\n+CME ERROR: 16\r\n"])
    assert done.error is not None
    assert (done.error.kind, done.error.code, done.error.message) == (
        "cme",
        16,
        "incorrect password",
    )


@pytest.mark.parametrize(
    ("line", "kind", "code", "transient", "message"),
    [
        ("+CMS ERROR: 38", "cms", 38, True, "network out of order"),
        ("+CMS ERROR: 42", "cms", 42, True, "congestion"),
        ("+CMS ERROR: 50", "cms", 50, False, "requested facility not subscribed"),
        ("+CMS ERROR: 304", "cms", 304, False, "invalid PDU mode parameter"),
        ("+CMS ERROR: 311", "cms", 311, False, "SIM PIN required"),
        ("+CMS ERROR: 322", "cms", 322, False, "memory full"),
        ("+CMS ERROR: 330", "cms", 330, False, "SMSC address unknown"),
        ("+CMS ERROR: 331", "cms", 331, True, "no network service"),
        ("+CMS ERROR: 332", "cms", 332, True, "network timeout"),
        ("+CMS ERROR: 500", "cms", 500, True, "unknown error"),
        ("+CMS ERROR: 513", "cms", 513, True, "vendor error 513"),
        ("+CMS ERROR: 1", "cms", 1, False, "unassigned number"),
        ("+CMS ERROR: 10", "cms", 10, False, "call barred"),
        ("+CME ERROR: 10", "cme", 10, False, "SIM not inserted"),
        ("+CME ERROR: 12", "cme", 12, False, "SIM PUK required"),
        ("+CME ERROR: 30", "cme", 30, True, "no network service"),
        ("+CME ERROR: 100", "cme", 100, True, "unknown"),
        ("+CME ERROR: SIM PIN required", "cme", 11, False, "SIM PIN required"),
        ("+CMS ERROR: network timeout", "cms", 332, True, "network timeout"),
        ("+CME ERROR: something new", "cme", None, False, "something new"),
        ("ERROR", "plain", None, False, "error"),
        ("COMMAND NOT SUPPORT", "plain", None, False, "command not support"),
    ],
)
def test_error_classification(
    line: str, kind: str, code: int | None, transient: bool, message: str
) -> None:
    error = parse_error(line)
    assert error is not None
    assert (error.kind, error.code, error.transient, error.message) == (
        kind,
        code,
        transient,
        message,
    )


def test_error_wording() -> None:
    assert str(ModemError.coded("cms", 38)) == "+CMS ERROR 38: network out of order"
    assert str(ModemError.timeout(60)) == "no answer within 60 s"
    assert parse_error("OK") is None and parse_error("+CSQ: 20,99") is None


def test_split_args() -> None:
    assert split_args('0,0,"Mega, Fon",2') == ["0", "0", "Mega, Fon", "2"]
    assert split_args("") == []


def test_nul_noise_is_dropped_and_broken_utf8_replaced() -> None:
    engine = AtEngine()
    engine.command("AT+COPS?", timeout=1, now=0)
    [result] = engine.receive(b'\x00\x00\r\n+COPS: 0,0,"Bee\x00line \xd0"\r\nOK\r\n')
    assert result.lines == ['+COPS: 0,0,"Beeline \ufffd"']
