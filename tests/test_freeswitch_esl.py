"""The ESL core, sans-I/O: framing at both levels of Content-Length, any header order,
any split of the bytes; both event formats; the conversation (auth, subscribe, api,
bgapi); and hostile bytes."""

import gzip
import json
import random

import pytest
from fs_lab import ANSWERS, HERE, SCENARIOS, SHARED, SHIPPED
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pbx_adapters.freeswitch.esl import (
    Authenticated,
    Disconnected,
    EslClient,
    EslParser,
    EslProtocolError,
    EventReceived,
    JobDone,
    Refused,
    Reply,
    UnsafeCommand,
    decode_event,
    encode_command,
)
from pbx_adapters.freeswitch.simulator import encode_event, load_transcript

needs_shared = pytest.mark.skipif(
    not SHARED.is_dir(),
    reason=f"needs the recorded traffic in {SHARED} (../shared beside the repo)",
)

JOB = (
    b"Content-Length: 184\nContent-Type: text/event-plain\n\n"
    b"Event-Name: BACKGROUND_JOB\nJob-UUID: 7f4db78a-17d7-11dd-b7a0-db4edd065621\n"
    b"Job-Command: originate\nJob-Command-Arg: user/101\nContent-Length: 41\n\n"
    b"+OK 7f4db78a-17d7-11dd-b7a0-db4edd065622\n"
)


def test_background_job_has_its_body_behind_a_second_content_length() -> None:
    assert len(JOB.split(b"\n\n", 1)[1]) == 184
    [message] = EslParser().feed(JOB)
    event = decode_event(message)
    assert event["Event-Name"] == "BACKGROUND_JOB"
    assert event["_body"] == "+OK 7f4db78a-17d7-11dd-b7a0-db4edd065622\n"
    assert event["Job-Command-Arg"] == "user/101"


def test_headers_in_any_order_and_split_anywhere() -> None:
    notice = b"Content-Type: text/disconnect-notice\nContent-Length: 23\n\nDisconnected, goodbye.\n"
    reply = b"Content-Type: command/reply\nReply-Text: +OK accepted\n\n"
    stream = reply + JOB + notice + reply
    whole = EslParser().feed(stream)
    assert [m.content_type for m in whole] == [
        "command/reply",
        "text/event-plain",
        "text/disconnect-notice",
        "command/reply",
    ]
    for cut in range(1, len(stream)):
        parser = EslParser()
        assert parser.feed(stream[:cut]) + parser.feed(stream[cut:]) == whole


def test_plain_values_are_url_decoded_and_json_is_taken_as_is() -> None:
    plain = (
        b"Event-Name: CHANNEL_CREATE\n"
        b"Caller-Caller-ID-Name: %D0%9C%D0%B0%D1%80%D0%B8%D1%8F%20%E1%83%90\n\n"
    )
    message = EslParser().feed(
        b"Content-Length: %d\nContent-Type: text/event-plain\n\n" % len(plain) + plain
    )[0]
    assert decode_event(message)["Caller-Caller-ID-Name"] == "Мария ა"
    body = json.dumps(
        {"Event-Name": "CHANNEL_CREATE", "Caller-Caller-ID-Name": "Мария ა"}, ensure_ascii=False
    ).encode()
    message = EslParser().feed(
        b"Content-Length: %d\nContent-Type: text/event-json\n\n" % len(body) + body
    )[0]
    assert decode_event(message)["Caller-Caller-ID-Name"] == "Мария ა"


def test_a_wanted_list_drops_noise_unread_but_keeps_custom_events() -> None:
    events = [
        {"Event-Name": "CODEC", "Unique-ID": "a"},
        {"Event-Name": "CHANNEL_CREATE", "Unique-ID": "b"},
        {"Event-Name": "CUSTOM", "Event-Subclass": "callcenter::info"},
    ]
    for fmt in ("json", "plain"):
        stream = b"".join(encode_event(e, fmt) for e in events)
        kept = [
            decode_event(m) for m in EslParser(events=frozenset({"CHANNEL_CREATE"})).feed(stream)
        ]
        assert [e["Event-Name"] for e in kept] == ["CHANNEL_CREATE", "CUSTOM"]


@pytest.mark.parametrize("fmt", ["json", "plain"])
def test_custom_events_are_dropped_unread_by_their_subclass(fmt) -> None:
    # As FreeSWITCH writes CUSTOM events: the subclass first, then the name.
    events = [
        {"Event-Subclass": "spandsp::txfaxpageresult", "Event-Name": "CUSTOM", "n": "1"},
        {"Event-Subclass": "callcenter::info", "Event-Name": "CUSTOM", "n": "2"},
        {"Event-Subclass": "sofia::register", "Event-Name": "CUSTOM", "n": "3"},
    ]
    stream = b"".join(encode_event(e, fmt) for e in events)
    wanted = frozenset({"CHANNEL_CREATE", "callcenter::info", "sofia::register"})
    kept = [decode_event(m) for m in EslParser(events=wanted).feed(stream)]
    assert [e["n"] for e in kept] == ["2", "3"]


@pytest.mark.parametrize("fmt", ["json", "plain"])
def test_simulator_encoding_round_trips_every_recorded_event(fmt) -> None:
    events = load_transcript(SHIPPED / "queue_answered.json.esl.gz")
    stream = b"".join(encode_event(e, fmt) for e in events)
    decoded = [decode_event(m) for m in EslParser().feed(stream)]
    if fmt == "plain":  # array variables are lists in JSON, ARRAY::a|:b in plain events
        events = [{k: v if isinstance(v, str) else "ARRAY::" + "|:".join(v)
                   for k, v in e.items()} for e in events]  # fmt: skip
    assert decoded == events
    assert any(isinstance(v, list) for e in load_transcript(SHIPPED / "queue_answered.json.esl.gz")
               for v in e.values())  # fmt: skip


def conversation(stream: bytes, chunks) -> tuple[EslClient, list]:
    client = EslClient("ClueCon", ["event json ALL"])
    out = []
    at = 0
    for size in chunks:
        out += client.receive(stream[at : at + size])
        at += size
    out += client.receive(stream[at:])
    return client, out


@needs_shared
@pytest.mark.parametrize("fmt", ["json", "plain"])
@pytest.mark.parametrize("name", SCENARIOS)
def test_every_recorded_stream_reads_the_same_whole_and_in_random_pieces(name, fmt) -> None:
    stream = (SHARED / f"{name}.{fmt}.esl").read_bytes()
    client, whole = conversation(stream, [])
    events = [o.event for o in whole if isinstance(o, EventReceived)]
    assert whole[0] == Authenticated() and isinstance(whole[-1], Disconnected)
    assert client.outgoing.startswith(b"auth ClueCon\n\nevent json ALL\n\n")
    assert all(e.get("Event-Name") for e in events)
    rand = random.Random(name)
    _, pieces = conversation(stream, [rand.choice((1, 2, 5, 100, 4096)) for _ in range(4000)])
    assert pieces == whole


@needs_shared
@pytest.mark.parametrize("name", ["busy", "queue_answered"])
def test_plain_and_json_listeners_saw_the_same_events(name) -> None:
    def channel_events(fmt: str) -> list:
        _, out = conversation((SHARED / f"{name}.{fmt}.esl").read_bytes(), [])
        return [
            (o.event["Event-Name"], o.event.get("Unique-ID"), o.event.get("Caller-Caller-ID-Name"))
            for o in out
            if isinstance(o, EventReceived) and o.event["Event-Name"].startswith("CHANNEL_")
        ]

    assert channel_events("plain") == channel_events("json")


@needs_shared
def test_shipped_copies_are_the_recorded_ones() -> None:
    for name in SCENARIOS:
        shipped = gzip.decompress((SHIPPED / f"{name}.json.esl.gz").read_bytes())
        assert shipped == (SHARED / f"{name}.json.esl").read_bytes(), name
    assert ANSWERS == json.loads((SHARED / "expected.json").read_text())
    assert (HERE / "fixtures" / "freeswitch" / "expected.json").is_file()


def test_the_conversation_auth_subscribe_api_and_bgapi() -> None:
    client = EslClient("s3cret", ["event json CHANNEL_CREATE", "filter Event-Name CHANNEL_CREATE"])
    assert client.receive(b"Content-Type: auth/request\n\n") == []
    assert client.data_to_send() == b"auth s3cret\n\n"
    ok = b"Content-Type: command/reply\nReply-Text: +OK accepted\n\n"
    assert client.receive(ok) == []
    assert (
        client.data_to_send()
        == b"event json CHANNEL_CREATE\n\nfilter Event-Name CHANNEL_CREATE\n\n"
    )
    assert client.receive(ok) == []  # one of two subscribe commands answered
    assert client.receive(ok) == [Authenticated()]
    request = client.api("status")
    job = client.bgapi("originate user/101 &park", "7f4db78a-17d7-11dd-b7a0-db4edd065621")
    assert client.data_to_send() == (
        b"api status\n\nbgapi originate user/101 &park\n"
        b"Job-UUID: 7f4db78a-17d7-11dd-b7a0-db4edd065621\n\n"
    )
    # The job's result may come before the bgapi's own reply: it is still matched.
    out = client.receive(
        JOB
        + b"Content-Type: api/response\nContent-Length: 4\n\nUP!\n"
        + b"Content-Type: command/reply\n"
        + b"Reply-Text: +OK Job-UUID: 7f4db78a-17d7-11dd-b7a0-db4edd065621\n\n"
    )
    assert out[0] == JobDone(
        "7f4db78a-17d7-11dd-b7a0-db4edd065621", True, "+OK 7f4db78a-17d7-11dd-b7a0-db4edd065622"
    )
    assert isinstance(out[1], EventReceived)
    assert out[2:] == [Reply(request, True, "UP!"), Reply(job, True, out[3].text)]


def test_a_wrong_password_and_a_rude_rejection_are_refusals() -> None:
    client = EslClient("wrong", ["event json ALL"])
    client.receive(b"Content-Type: auth/request\n\n")
    assert client.receive(b"Content-Type: command/reply\nReply-Text: -ERR invalid\n\n") == [
        Refused("-ERR invalid")
    ]
    body = b"Access Denied, go away.\n"
    out = EslClient("x", []).receive(
        b"Content-Type: text/rude-rejection\nContent-Length: %d\n\n" % len(body) + body
    )
    assert out == [Refused("Access Denied, go away.")]


def test_commands_cannot_smuggle_a_second_command() -> None:
    with pytest.raises(UnsafeCommand):
        encode_command("api uuid_kill x\n\napi fsctl shutdown")
    with pytest.raises(UnsafeCommand):
        encode_command("bgapi originate x", {"Job-UUID": "a\rb"})
    client = EslClient("x", [])
    with pytest.raises(UnsafeCommand):
        client.api("status\nexit")
    assert client.data_to_send() == b""


def test_garbage_lengths_end_the_stream_with_a_clear_error() -> None:
    with pytest.raises(EslProtocolError, match="Content-Length"):
        EslParser().feed(b"Content-Length: lots\n\n")
    with pytest.raises(EslProtocolError, match="Content-Length"):
        EslParser().feed(b"Content-Length: 99999999999\n\n")
    with pytest.raises(EslProtocolError, match="header block"):
        EslParser().feed(b"X" * 70_000)


def test_an_event_that_does_not_decode_is_counted_not_fatal() -> None:
    client = EslClient("x", [])
    bad = b"{not json"
    good = b'{"Event-Name":"HEARTBEAT"}'
    out = client.receive(
        b"Content-Length: %d\nContent-Type: text/event-json\n\n" % len(bad)
        + bad
        + b"Content-Length: %d\nContent-Type: text/event-json\n\n" % len(good)
        + good
    )
    assert out == [EventReceived({"Event-Name": "HEARTBEAT"})]
    assert len(client.problems) == 1


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=3000), st.lists(st.integers(1, 64), max_size=50))
def test_fuzzed_bytes_give_messages_or_a_protocol_error_never_anything_else(data, cuts) -> None:
    client = EslClient("x", ["event json ALL"])
    at = 0
    try:
        for size in [*cuts, len(data)]:
            client.receive(data[at : at + size])
            at += size
    except EslProtocolError:
        pass


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.dictionaries(
            st.text(
                st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=12
            ).filter(lambda k: ": " not in k and k not in ("Content-Length", "_body")),
            st.text(st.characters(blacklist_categories=("Cs",)), max_size=40),
            max_size=6,
        ),
        max_size=5,
    ),
    st.sampled_from(["json", "plain"]),
    st.integers(1, 50),
)
def test_any_events_survive_encoding_and_any_chunking(events, fmt, chunk) -> None:
    events = [{"Event-Name": "CUSTOM", **e} for e in events]
    stream = b"".join(encode_event(e, fmt) for e in events)
    parser = EslParser()
    messages = []
    for at in range(0, len(stream), chunk):
        messages += parser.feed(stream[at : at + chunk])
    assert [decode_event(m) for m in messages] == events
