"""SMS: outbox throughput through the whole service, and the PDU codec against a published one.

1. Outbox. N emulated GSM modems (``gsm_modem.emulator``, ``--send-delay`` seconds per
   AT+CMGS, 3 s by default, as real modems take) behind a real ``Service`` (SQLite, the
   modem drivers on ptys, the outbox with one worker per modem) served by aiohttp on
   127.0.0.1, all in this process. A sales user queues M messages with ``POST /api/sms``:
   GSM 7-bit and Cyrillic (UCS-2) texts, one in ten long enough for 2 parts (each part is
   one AT+CMGS). Measured from the first POST to the last ``sms.status`` "sent" event on
   the bus: messages and parts per minute, against the modem-limited maximum of
   modems x 60 / send_delay parts per minute (goal: >= 95% of it). Checked from the PDUs
   each emulator received (decoded with ``gsm_modem.pdu``): every message sent exactly
   once, each part once, on one modem, reassembling to the text queued; none failed; how
   the messages spread over the modems. The default run (4 modems, 400 messages, 440
   parts, 3 s) takes about 6 minutes; ``--send-delay 0.3`` is a quick run.

2. Codec. ``encode_submit`` + ``decode`` of every part of a mixed corpus (GSM 7-bit,
   the extension table, Cyrillic, Georgian, Khmer, emoji, long multipart texts), hex in
   and hex out as AT+CMGS and AT+CMGR speak, against python-gsmmodem-new's
   ``encodeSmsSubmitPdu`` + ``decodeSmsPdu`` (used the way its own ``GsmModem`` does:
   ``str(pdu)`` for the hex) in the same run, on the texts both can handle (it has no
   emoji, no form feed, and '`' where '§' is). Prints messages/s for each, the ratio, and
   whether both decode both encoders' PDUs to the text.

Usage: python bench/sms.py [--only outbox|codec] [--modems 4] [--messages 400]
       [--send-delay 3.0]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web
from sqlalchemy import select

from cti import auth
from cti.config import Config, DatabaseConfig, ModemConfig, ServerConfig, SmsConfig
from cti.db.models import SmsMessage
from cti.domain import SmsStatus
from cti.events import SmsStatusChanged
from cti.http.app import build_app
from cti.service import Service
from gsm_modem.emulator import ModemEmulator
from gsm_modem.pdu import Reassembler, Submit, decode, encode_submit, sms_parts_needed

GOAL = 0.95
LONG_EVERY = 10  # one message in ten needs 2 parts

# --- the outbox ------------------------------------------------------------------------


def outbox_text(index: int) -> str:
    """The text of message ``index``: GSM 7-bit and Cyrillic, now and then a long one."""
    if index % LONG_EVERY == LONG_EVERY - 1:
        if index // LONG_EVERY % 2:
            return (
                f"Здравствуйте! Заказ №{index} собран и ждёт вас в пункте выдачи на "
                "Тверской, 12, с 10:00 до 19:00. Возьмите паспорт."
            )
        return (
            f"Dear customer, your order {index} has been packed and handed to the courier. "
            "He will call you 30 minutes before arrival; delivery window 10:00-14:00 "
            "tomorrow. To change the time reply to this message or call +7 495 123-45-67."
        )
    if index % 2:
        return f"Заказ №{index} готов. Ждём вас с 10:00 до 19:00, ул. Тверская, 12."
    return f"Your order {index} is ready: pick it up at Tverskaya 12, 10:00-19:00."


def outbox_number(index: int) -> tuple[str, str]:
    """(as written in the request, E.164): a number of its own for each message, so the
    PDUs an emulator received say which message they belong to."""
    e164 = f"+7916{1_000_000 + index:07d}"
    rest = e164[5:]
    written = f"8 (916) {rest[:3]}-{rest[3:5]}-{rest[5:]}" if index % 3 == 0 else e164
    return written, e164


@dataclass
class Queued:
    index: int
    e164: str
    text: str
    parts: int
    sms_id: str = ""
    post_seconds: float = 0.0


@dataclass
class Watch:
    """The bus's ``sms.status`` events, as they come."""

    first: dict[str, dict[str, float]] = field(default_factory=lambda: defaultdict(dict))
    requeued: Counter[str] = field(default_factory=Counter)
    reasons: dict[str, str] = field(default_factory=dict)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    expected: int = 0

    def finished(self) -> int:
        return sum(1 for seen in self.first.values() if "sent" in seen or "failed" in seen)


async def watch_bus(subscription, watch: Watch) -> None:
    async for event in subscription:
        if not isinstance(event, SmsStatusChanged):
            continue
        seen = watch.first[event.sms_id]
        status = event.status.value
        if status == SmsStatus.QUEUED.value and "sending" in seen:
            watch.requeued[event.sms_id] += 1
        if event.reason:
            watch.reasons[event.sms_id] = event.reason
        seen.setdefault(status, time.perf_counter())
        if watch.expected and watch.finished() >= watch.expected:
            watch.done.set()


async def start_http(service: Service) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(build_app(service), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


async def sales_token(service: Service) -> str:
    async with service.sessions() as session:
        user = await auth.create_user(session, "bench-sales", "sales", extension="105")
        token = await auth.issue_token(session, user)
        await session.commit()
    return token


async def post_all(url: str, token: str, queue: list[Queued], concurrency: int) -> float:
    """POST every message, ``concurrency`` at a time; returns when the first was sent."""
    headers = {"Authorization": f"Bearer {token}"}
    gate = asyncio.Semaphore(concurrency)
    started = time.perf_counter()

    async def post(http: aiohttp.ClientSession, item: Queued) -> None:
        written, _ = outbox_number(item.index)
        async with gate:
            begin = time.perf_counter()
            async with http.post(
                f"{url}/api/sms", json={"to": written, "text": item.text}, headers=headers
            ) as reply:
                body = await reply.json()
            item.post_seconds = time.perf_counter() - begin
        if reply.status != 202:
            raise RuntimeError(f"POST /api/sms answered {reply.status}: {body}")
        if (body["to"], body["parts"]) != (item.e164, item.parts):
            raise RuntimeError(f"queued as {body}, expected {item.e164} in {item.parts} parts")
        item.sms_id = body["id"]

    async with aiohttp.ClientSession() as http:
        await asyncio.gather(*(post(http, item) for item in queue))
    return started


def check_pdus(
    emulators: list[ModemEmulator], names: list[str], queue: list[Queued]
) -> tuple[list[str], dict[str, Counter[str]]]:
    """Problems found in what the modems sent, and per modem: messages and parts."""
    by_number = {item.e164: item for item in queue}
    got: dict[str, list[tuple[str, Submit]]] = defaultdict(list)
    problems = []
    spread: dict[str, Counter[str]] = {name: Counter() for name in names}
    for name, emulator in zip(names, emulators, strict=True):
        for pdu in emulator.sent:
            part = decode(pdu)
            assert isinstance(part, Submit)
            if part.recipient not in by_number:
                problems.append(f"{name} sent a PDU to {part.recipient}, not one of ours")
                continue
            got[part.recipient].append((name, part))
            spread[name]["parts"] += 1
    for item in queue:
        parts = got.get(item.e164, [])
        modems = {name for name, _ in parts}
        seqs = sorted(part.concat.seq if part.concat else 1 for _, part in parts)
        refs = {part.concat.reference for _, part in parts if part.concat}
        if seqs != list(range(1, item.parts + 1)):
            problems.append(f"message {item.index}: parts {seqs} sent, {item.parts} expected")
        if len(modems) > 1 or len(refs) > 1:
            problems.append(f"message {item.index}: parts on {modems}, references {refs}")
        if modems:
            spread[min(modems)]["messages"] += 1
        reassembler = Reassembler()
        complete = [reassembler.add(part, 0.0) for _, part in parts][-1:]
        if seqs == list(range(1, item.parts + 1)) and (
            not complete or complete[0] is None or complete[0].text != item.text
        ):
            problems.append(f"message {item.index}: the parts do not reassemble to its text")
    return problems, spread


async def run_outbox(args: argparse.Namespace) -> None:
    names = [f"gsm{i + 1}" for i in range(args.modems)]
    queue = []
    for index in range(args.messages):
        text = outbox_text(index)
        _, e164 = outbox_number(index)
        queue.append(Queued(index, e164, text, sms_parts_needed(text)[1]))
    parts = sum(item.parts for item in queue)
    encodings = Counter(sms_parts_needed(item.text)[0] for item in queue)
    maximum = args.modems * 60 / args.send_delay  # parts a minute
    ideal = -(-parts // args.modems) * args.send_delay
    print(
        f"== Outbox: {args.modems} emulated modems, {args.send_delay} s per AT+CMGS, status "
        f"reports {args.status_report_delay} s later; {args.messages} messages "
        f"({encodings['gsm7']} GSM 7-bit, {encodings['ucs2']} UCS-2), {parts} parts, POSTed "
        f"{args.concurrency} at a time"
    )
    print(
        f"modem-limited maximum: {maximum:.0f} parts/min; at it these {parts} parts take "
        f">= {ideal:.0f} s"
    )
    async with contextlib.AsyncExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cti-bench-sms-")))
        emulators = [
            await stack.enter_async_context(
                ModemEmulator(
                    send_delay=args.send_delay,
                    status_report_delay=args.status_report_delay,
                    imei=f"35693803564{3800 + i:04d}",
                )
            )
            for i in range(args.modems)
        ]
        config = Config(
            modem=[
                ModemConfig(name=name, port=str(emulator.path))
                for name, emulator in zip(names, emulators, strict=True)
            ],
            database=DatabaseConfig(auto_migrate=True),
            server=ServerConfig(data_dir=tmp),
            sms=SmsConfig(per_user_per_hour=100_000),
        )
        service = await Service.start(config)
        stack.push_async_callback(service.close)
        async with asyncio.timeout(30):
            await asyncio.gather(*(link.modem.wait_ready() for link in service.modems.values()))
        token = await sales_token(service)
        runner, url = await start_http(service)
        stack.push_async_callback(runner.cleanup)

        watch = Watch(expected=len(queue))
        subscription = service.bus.subscribe(prefixes=["sms."], maxsize=1_000_000, name="bench")
        watcher = asyncio.create_task(watch_bus(subscription, watch))
        stack.callback(watcher.cancel)

        started = await post_all(url, token, queue, args.concurrency)
        all_queued = time.perf_counter()
        print(f"POST /api/sms: {len(queue)} queued in {all_queued - started:.2f} s", end="")
        latencies = sorted(item.post_seconds * 1000 for item in queue)
        cuts = statistics.quantiles(latencies, n=100, method="inclusive")
        print(f" (p50 {cuts[49]:.1f} ms, p99 {cuts[98]:.1f} ms a request)")
        try:
            async with asyncio.timeout(ideal * 3 + 120):
                await watch.done.wait()
        except TimeoutError:
            print(f"TIMED OUT: {watch.finished()} of {len(queue)} finished")
        ids = {item.sms_id for item in queue}
        sent_at = [watch.first[i]["sent"] for i in ids if "sent" in watch.first.get(i, {})]
        failed = [i for i in ids if "failed" in watch.first.get(i, {})]
        if not sent_at:
            print("nothing was sent")
            return
        elapsed = max(sent_at) - started
        sent_parts = sum(item.parts for item in queue if "sent" in watch.first[item.sms_id])
        per_minute, parts_per_minute = len(sent_at) / elapsed * 60, sent_parts / elapsed * 60
        share = parts_per_minute / maximum
        print(
            f"sent: {len(sent_at)} messages, {sent_parts} parts in {elapsed:.1f} s from the "
            f"first POST to the last 'sent': {per_minute:.1f} messages/min, "
            f"{parts_per_minute:.1f} parts/min"
        )
        print(
            f"against the modem-limited maximum of {maximum:.0f} parts/min: {share:.1%} "
            f"(goal >= {GOAL:.0%}: {'met' if share >= GOAL else 'NOT met'})"
        )
        idle = (elapsed * args.modems - sent_parts * args.send_delay) / len(sent_at)
        print(
            f"modems idle (not in AT+CMGS) from the first POST to the last 'sent': "
            f"{idle * 1000:.0f} ms a message on average, start and tail included"
        )
        gaps = sorted(
            watch.first[i]["sent"] - watch.first[i]["sending"]
            for i in ids
            if "sent" in watch.first[i]
        )
        print(
            f"claimed to sent, a message: median {statistics.median(gaps):.2f} s, "
            f"max {gaps[-1]:.2f} s"
        )

        # Status reports of the last parts: give them their delay, then read the database.
        await asyncio.sleep(args.status_report_delay + 2)
        async with service.sessions() as session:
            rows = (await session.scalars(select(SmsMessage))).all()
        problems, spread = check_pdus(emulators, names, queue)
        statuses = Counter(row.status for row in rows)
        by_modem = Counter(row.modem for row in rows)
        print(f"statuses now: {dict(sorted(statuses.items()))}")
        undelivered = [row for row in rows if row.status == SmsStatus.SENT.value]
        if undelivered:
            multi = sum(1 for row in undelivered if row.parts > 1)
            print(
                f"  still 'sent' {args.status_report_delay + 2:.0f} s after the last part: "
                f"{len(undelivered)} ({multi} of them multipart; every part's status report "
                "was sent by the emulator)"
            )
        print(
            f"failed: {len(failed)}; requeued (a transient error): {sum(watch.requeued.values())}"
        )
        for sms_id in failed[:5]:
            print(f"  failed {sms_id}: {watch.reasons.get(sms_id)}")
        total_pdus = sum(len(emulator.sent) for emulator in emulators)
        print(
            f"PDUs the modems received: {total_pdus} for {parts} parts; every message once, "
            f"each part once, on one modem, reassembling to its text: "
            f"{'yes' if not problems else 'NO'}"
        )
        for problem in problems[:10]:
            print(f"  {problem}")
        for name in names:
            counts = spread[name]
            print(
                f"  {name}: {counts['messages']:4} messages, {counts['parts']:4} parts "
                f"(the database says {by_modem[name]} messages)"
            )


# --- the codec --------------------------------------------------------------------------

TO = "+79161234567"
CORPUS = {
    "gsm7": [
        "Your order 4711 is ready. Pick it up at Tverskaya 12 before 19:00.",
        "Réservation confirmée à 20h, table pour 4. Merci!",
        "Code: 482913. Valid 5 minutes. Do not share it with anyone.",
        "Ihre Bestellung ist da: Öffnungszeiten 9-18 Uhr, Zahlung @ Kasse.",
    ],
    "extension": [
        "Price: 15€ [promo] {VIP} ~10% off | code ^X\\Y",
        "Balance: 1 250€; details at {site}/[account] ~ see you!",
    ],
    "cyrillic": [
        "Здравствуйте! Ваш заказ №4711 готов к выдаче.",
        "Курьер приедет завтра с 10:00 до 14:00. Оплата картой или наличными.",
    ],
    "georgian": ["გამარჯობა! თქვენი შეკვეთა მზადაა. გელოდებით 10:00-დან 19:00-მდე."],
    "khmer": ["សួស្តី! ការបញ្ជាទិញរបស់អ្នករួចរាល់ហើយ។ សូមអរគុណ។"],
    "long": [
        "Dear customer, your order 4711 has been packed and handed to the courier. " * 5,
        "Скидка 20% на всё до воскресенья! Покажите это сообщение на кассе. " * 5,
        "[€] {~} " * 40,  # escapes on the part boundaries
        "გმადლობთ შეკვეთისთვის! " * 12,
    ],
    "ours only": [
        "Спасибо за заказ 🎉👍 ждём вас снова!",
        "Thanks! 😀" * 30,
        "Section § 5 of the contract\fnext page",
        "Quote `this` please",
    ],
}


def baseline_can(text: str) -> bool:
    """What python-gsmmodem-new encodes right: not '§' (its table has '`'), the form feed
    or the escape, nor characters beyond the BMP (see tests/test_sms_pdu.py)."""
    return not set(text) & {"§", "`", "\f", "ÿ", "\x1b"} and all(ord(c) <= 0xFFFF for c in text)


def ours(texts: list[str]) -> tuple[float, int, int]:
    started = time.process_time()
    parts = 0
    for reference, text in enumerate(texts):
        for part in encode_submit(TO, text, reference=reference & 0xFF, status_report=True):
            decode(part.hex)
            parts += 1
    return time.process_time() - started, len(texts), parts


def theirs(texts: list[str]) -> tuple[float, int, int]:
    from gsmmodem.pdu import decodeSmsPdu, encodeSmsSubmitPdu

    started = time.process_time()
    parts = 0
    for reference, text in enumerate(texts):
        for pdu in encodeSmsSubmitPdu(TO, text, reference=reference & 0xFF):
            decodeSmsPdu(str(pdu))
            parts += 1
    return time.process_time() - started, len(texts), parts


def best_of(runs: int, fns: list[Callable[[list[str]], tuple]], texts: list[str]) -> list[tuple]:
    """The fastest of ``runs`` runs of each, taken in turns. Timed in CPU time of this
    process: on a shared machine wall time swings the ratio by +-15%."""
    results: list[list[tuple]] = [[] for _ in fns]
    for _ in range(runs):
        for fn, out in zip(fns, results, strict=True):
            gc.collect()
            out.append(fn(texts))
    return [min(out, key=lambda r: r[0]) for out in results]


def agreement(texts: list[str]) -> list[str]:
    """Both decoders read both encoders' PDUs back to the text: the disagreements."""
    from gsmmodem.pdu import decodeSmsPdu, encodeSmsSubmitPdu

    def joined(decoded: list[dict]) -> str:
        return "".join(d["text"] for d in decoded)

    def reassembled(hexes: list[str]) -> str | None:
        reassembler = Reassembler()
        complete = [reassembler.add(decode(h), 0.0) for h in hexes][-1]
        return complete.text if complete else None

    problems = []
    for text in texts:
        our_hex = [p.hex for p in encode_submit(TO, text, reference=42)]
        their_hex = [str(p) for p in encodeSmsSubmitPdu(TO, text, reference=42)]
        readings = {
            "ours of ours": reassembled(our_hex),
            "theirs of ours": joined([decodeSmsPdu(h) for h in our_hex]),
            "ours of theirs": reassembled(their_hex),
            "theirs of theirs": joined([decodeSmsPdu(h) for h in their_hex]),
        }
        wrong = [name for name, reading in readings.items() if reading != text]
        if wrong:
            problems.append(f"{text[:40]!r}: {', '.join(wrong)} differ")
    return problems


def run_codec(args: argparse.Namespace) -> None:
    everything = [text for texts in CORPUS.values() for text in texts]
    shared = [text for text in everything if baseline_can(text)]
    parts = sum(len(encode_submit(TO, t, reference=0)) for t in shared)
    print(
        f"\n== PDU codec: encode_submit + decode, {len(everything)} texts "
        f"({', '.join(f'{k} {len(v)}' for k, v in CORPUS.items())}); "
        f"{len(shared)} both can handle, {parts} parts; x{args.rounds}, best of {args.runs}"
    )
    problems = agreement(shared)
    print(
        f"both decoders read both encoders' PDUs back to the text: "
        f"{len(shared) - len(problems)} of {len(shared)}"
    )
    for problem in problems:
        print(f"  {problem}")
    ours_only = [t for t in everything if not baseline_can(t)]
    for text in ours_only:  # ours handles the rest: checked, not timed against anything
        parts_hex = [p.hex for p in encode_submit(TO, text, reference=7)]
        reassembler = Reassembler()
        complete = [reassembler.add(decode(h), 0.0) for h in parts_hex][-1]
        assert complete is not None and complete.text == text, text

    texts = shared * args.rounds
    (base_time, messages, base_parts), (ours_time, _, ours_parts) = best_of(
        args.runs, [theirs, ours], texts
    )
    [(all_time, all_messages, _)] = best_of(args.runs, [ours], everything * args.rounds)
    base_rate, ours_rate = messages / base_time, messages / ours_time
    print(
        f"python-gsmmodem-new 0.13.0:  {base_rate:10,.0f} messages/s  "
        f"{base_parts / base_time:10,.0f} parts/s"
    )
    print(
        f"ours (gsm_modem.pdu):        {ours_rate:10,.0f} messages/s  "
        f"{ours_parts / ours_time:10,.0f} parts/s"
    )
    print(f"ratio ours / python-gsmmodem-new: {ours_rate / base_rate:.2f}x")
    for kind, kind_texts in CORPUS.items():
        both = [text for text in kind_texts if baseline_can(text)]
        if both:
            (base_t, count, _), (ours_t, _, _) = best_of(
                args.runs, [theirs, ours], both * (args.rounds * 4 // len(both))
            )
            print(
                f"  {kind + ':':<10} theirs {count / base_t:8,.0f}/s  ours "
                f"{count / ours_t:8,.0f}/s  ratio {base_t / ours_t:.2f}x"
            )
    print(
        f"ours on the whole corpus (emoji, form feed, '§' too): "
        f"{all_messages / all_time:,.0f} messages/s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["outbox", "codec"], help="run one part")
    parser.add_argument("--modems", type=int, default=4, help="emulated modems (4)")
    parser.add_argument("--messages", type=int, default=400, help="messages queued (400)")
    parser.add_argument(
        "--send-delay", type=float, default=3.0, help="seconds an AT+CMGS takes (3.0)"
    )
    parser.add_argument(
        "--status-report-delay",
        type=float,
        default=1.0,
        help="seconds from a part sent to its status report (1.0)",
    )
    parser.add_argument("--concurrency", type=int, default=10, help="POSTs in flight (10)")
    parser.add_argument("--rounds", type=int, default=200, help="codec corpus repeats (200)")
    parser.add_argument("--runs", type=int, default=5, help="codec: best of N runs (5)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus")
    if args.only != "outbox":
        run_codec(args)
    if args.only != "codec":
        asyncio.run(run_outbox(args))


if __name__ == "__main__":
    main()
