"""The ``cti`` command line."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sqlalchemy import select

from cti import __version__
from cti.config import Config, ConfigError, load_config
from cti.domain import Role


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    try:
        config = None
        if hasattr(args, "config"):
            args.config = find_config(args.config)
            config = load_config(args.config)
            if args.run is not _serve:  # serve says it in its log, one JSON object a line
                print(f"cti: {describe_source(args.config, config)}", file=sys.stderr)
        return args.run(args, config)
    except ConfigError as e:
        print(f"cti: configuration error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


DEFAULT_CONFIG = "cti.toml"


def find_config(given: str | None) -> str | None:
    """The configuration file: --config, else $CTI_CONFIG (the option's default), else
    ./cti.toml when there is one; None: the built-in defaults."""
    if given:
        return given
    return DEFAULT_CONFIG if Path(DEFAULT_CONFIG).is_file() else None


def describe_source(path: str | None, config: Config) -> str:
    """Which configuration and database a command uses, in one line (no password)."""
    from sqlalchemy.engine import make_url

    database = make_url(config.database_url).render_as_string(hide_password=True)
    source = path or f"the built-in defaults (no ./{DEFAULT_CONFIG}, no $CTI_CONFIG)"
    return f"configuration {source}, database {database}"


def _not_migrated(error: Any, args: argparse.Namespace) -> int:
    """The schema is behind: say so with the exact command that fixes it."""
    error.upgrade = "cti db upgrade" + (f" -c {args.config}" if args.config else "")
    print(f"cti: {error}", file=sys.stderr)
    return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cti",
        description="CTI middleware: screen pops, click-to-dial, call log, SMS and faxes "
        "between your PBX, GSM modem and CRM.",
    )
    parser.add_argument("--version", action="version", version=f"cti {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    def command(
        name: str,
        help_text: str,
        run: Callable[..., int],
        *,
        parent: Any = commands,
        config: bool = True,
    ) -> argparse.ArgumentParser:
        sub = parent.add_parser(name, help=help_text, description=help_text)
        if config:
            sub.add_argument(
                "--config",
                "-c",
                metavar="FILE",
                default=os.environ.get("CTI_CONFIG"),
                help="TOML configuration file (default: $CTI_CONFIG, else ./cti.toml if there "
                "is one, else built-in defaults; CTI_* environment variables override it)",
            )
        sub.set_defaults(run=run)
        return sub

    command("serve", "Run the service until SIGINT or SIGTERM.", _serve)
    demo = command(
        "demo",
        "Run the service with embedded defaults in a temporary directory, with demo users; "
        "prints the URL and their tokens.",
        _demo,
        config=False,
    )
    demo.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    demo.add_argument("--port", type=int, default=8080, help="port (8080; 0 picks a free one)")
    demo.add_argument(
        "--pbx",
        choices=("asterisk", "freeswitch", "panasonic", "avaya"),
        default="asterisk",
        help="which PBX the demo simulates, replaying its recorded calls (asterisk); "
        "panasonic and avaya add one printing SMDR call records beside the Asterisk",
    )
    demo.add_argument(
        "--data-dir",
        help="keep the demo's data here instead of a temporary directory that is removed on exit",
    )

    command(
        "check-config", "Validate the configuration and print it, secrets hidden.", _check_config
    )

    watch = command(
        "watch",
        "Print the live events a user sees (calls, lines), one a line.",
        _watch,
        config=False,
    )
    watch.add_argument("url", help="the service's base URL, e.g. http://127.0.0.1:8080")
    watch.add_argument(
        "--token",
        default=os.environ.get("CTI_TOKEN"),
        help="API token (default: $CTI_TOKEN, which keeps it out of `ps`)",
    )

    db = commands.add_parser("db", help="Database schema.", description="Database schema.")
    db_commands = db.add_subparsers(title="commands", metavar="COMMAND", required=True)
    command(
        "upgrade",
        "Create or migrate the database schema to this version.",
        _db_upgrade,
        parent=db_commands,
    )
    command(
        "current",
        "Print the schema revision of the database and of this version.",
        _db_current,
        parent=db_commands,
    )

    user = commands.add_parser(
        "user", help="Users and API tokens.", description="Users and API tokens."
    )
    user_commands = user.add_subparsers(title="commands", metavar="COMMAND", required=True)
    add = command(
        "add",
        "Add a user and print their API token (shown this once).",
        _user_add,
        parent=user_commands,
    )
    add.add_argument("name", help="login name (any script, no spaces)")
    add.add_argument("--role", required=True, choices=[r.value for r in Role])
    add.add_argument("--extension", help="the user's own phone extension (operators need one)")
    add.add_argument("--display-name", default="", help="full name shown to colleagues")
    add.add_argument(
        "--password",
        action="store_true",
        help="also set a password for the web login (asked for, or read from "
        "standard input when it is not a terminal)",
    )
    add.add_argument(
        "--force",
        action="store_true",
        help="give the user an extension another active user has already (a shared phone)",
    )
    command("list", "List users.", _user_list, parent=user_commands)
    token = command(
        "token",
        "Issue another API token for a user and print it.",
        _user_token,
        parent=user_commands,
    )
    token.add_argument("name")
    revoke = command(
        "revoke", "Revoke every API token of a user.", _user_revoke, parent=user_commands
    )
    revoke.add_argument("name")

    modem = commands.add_parser("modem", help="GSM modems.", description="GSM modems.")
    modem_commands = modem.add_subparsers(title="commands", metavar="COMMAND", required=True)
    probe = command(
        "probe",
        "Open a modem's port, run the service's init and say what it found, or what is "
        "wrong (stop the service first: it holds the port).",
        _modem_probe,
        parent=modem_commands,
        config=False,
    )
    probe.add_argument("port", help="e.g. /dev/serial/by-id/usb-...-if02-port0 or /dev/ttyUSB2")
    probe.add_argument("--baudrate", type=int, default=115200)
    probe.add_argument("--pin", help="the SIM's PIN, if it asks for one")
    probe.add_argument("--timeout", type=float, default=30.0, help="seconds (30)")
    sms = commands.add_parser("sms", help="SMS.", description="SMS.")
    sms_commands = sms.add_subparsers(title="commands", metavar="COMMAND", required=True)
    sms_send = command(
        "send",
        "Send one SMS straight through a modem, for a first test (stop the service first: "
        "it holds the port).",
        _sms_send,
        parent=sms_commands,
    )
    sms_send.add_argument("number", help="as people write it: 8 916 123-45-67, +7 916 ...")
    sms_send.add_argument("text")
    which = sms_send.add_mutually_exclusive_group()
    which.add_argument(
        "--modem", help="a [[modem]] of the configuration, by name (default: the first)"
    )
    which.add_argument("--port", help="a port, when no [[modem]] is configured")

    imports = commands.add_parser("import", help="Import data.", description="Import data.")
    import_commands = imports.add_subparsers(title="commands", metavar="COMMAND", required=True)
    contacts_in = command(
        "contacts",
        "Import clients, contacts and phones from a CSV or vCard file, in one transaction: "
        "rows that fail their checks are reported and skipped.",
        _import_contacts,
        parent=import_commands,
    )
    contacts_in.add_argument("file", help="the file (- for standard input)")
    contacts_in.add_argument(
        "--format", choices=["csv", "vcard"], help="default: vcard for .vcf/.vcard files, else csv"
    )
    contacts_in.add_argument(
        "--encoding", help="the file's encoding (default: UTF-8 when it decodes so, else cp1251)"
    )
    contacts_in.add_argument(
        "--map",
        action="append",
        default=[],
        metavar="FIELD=COLUMN",
        help="the column of a field, when its header is not one the import knows; repeat "
        "for several phone columns. Fields: key, name, kind, manager, tags, notes, phone, "
        "contact, position, email, contact_phone, extension, label",
    )
    contacts_in.add_argument(
        "--dry-run", action="store_true", help="check every row and report, write nothing"
    )
    exports = commands.add_parser("export", help="Export data.", description="Export data.")
    export_commands = exports.add_subparsers(title="commands", metavar="COMMAND", required=True)
    contacts_out = command(
        "contacts",
        "Export the client directory as CSV, one row per phone (UTF-8 with BOM, ';').",
        _export_contacts,
        parent=export_commands,
    )
    contacts_out.add_argument("file", help="the file to write (- for standard output)")
    return parser


def _serve(args: argparse.Namespace, config: Config) -> int:
    from cti.db.migrate import DatabaseNotMigrated
    from cti.logs import setup_logging
    from cti.service import serve

    setup_logging(config.server.log_level, config.server.log_format)
    logging.getLogger("cti").info(describe_source(args.config, config))
    try:
        asyncio.run(serve(config))
    except DatabaseNotMigrated as e:
        return _not_migrated(e, args)
    except OSError as e:
        print(
            f"cti: cannot listen on {config.server.host}:{config.server.port}: {e.strerror}",
            file=sys.stderr,
        )
        return 1
    return 0


def _demo(args: argparse.Namespace, _config: None) -> int:
    from cti.demo import run_demo

    return run_demo(host=args.host, port=args.port, data_dir=args.data_dir, pbx=args.pbx)


WATCH_CLOSED = {
    4401: "the token ended (signed out, expired or revoked)",
    1001: "the service is stopping",
    1008: "the service closed the connection: too many frames",
}


def _watch(args: argparse.Namespace, _config: None) -> int:
    import json

    import aiohttp
    from yarl import URL

    if not args.token:
        print("cti watch: give a token with --token or $CTI_TOKEN", file=sys.stderr)
        return 2
    base = URL(args.url)
    if base.scheme not in ("http", "https") or not base.host:
        print(
            f"cti watch: {args.url!r} is not the service's URL; give it with its scheme, "
            "e.g. http://127.0.0.1:8080",
            file=sys.stderr,
        )
        return 2

    async def run() -> int:
        url = str(base).rstrip("/") + "/ws"
        async with aiohttp.ClientSession() as http:
            try:
                ws = await http.ws_connect(url, headers={"Authorization": f"Bearer {args.token}"})
            except aiohttp.WSServerHandshakeError as e:
                why = "the service refused the token" if e.status == 401 else e.message
                print(f"cti watch: {url}: {why} ({e.status})", file=sys.stderr)
                return 1
            except aiohttp.ClientError as e:
                print(f"cti watch: cannot reach {url}: {e}", file=sys.stderr)
                return 1
            printer = WatchLines()
            async for message in ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    break
                for line in printer.lines(json.loads(message.data)):
                    print(line, flush=True)
            why = WATCH_CLOSED.get(ws.close_code or 0, f"closed ({ws.close_code})")
            print(f"cti watch: {why}", file=sys.stderr)
        return 0 if ws.close_code in (1000, 1001) else 1

    return asyncio.run(run())


class WatchLines:
    """The lines ``cti watch`` prints: a pop's line only when what it says changed (the
    directory's answer and the history fill in a pop without changing its line)."""

    def __init__(self) -> None:
        self._shown: dict[str, str] = {}  # by call id, while the call goes on

    def lines(self, frame: dict[str, Any]) -> list[str]:
        kind = frame.get("type")
        if kind == "resync":
            pops = frame["state"]["pops"]
            self._shown = {card["call_id"]: _describe_pop(card) for card in pops}
        if kind != "pop":
            return describe_frame(frame)
        card = frame["data"]
        line = _describe_pop(card)
        if self._shown.get(card["call_id"]) == line:
            return []
        if card["state"] == "ended":
            self._shown.pop(card["call_id"], None)
        else:
            self._shown[card["call_id"]] = line
        return [line]


def describe_frame(frame: dict[str, Any]) -> list[str]:
    """A live-feed frame as lines for people (docs/websocket.md)."""
    kind, data = frame.get("type"), frame.get("data") or {}
    if kind == "hello":
        return [f"connected as {frame['user']['username']}"]
    if kind == "resync":
        pops = frame["state"]["pops"]
        return [f"{len(pops)} calls ringing or in progress", *map(_describe_pop, pops)]
    if kind == "pop":
        return [_describe_pop(data)]
    if kind == "lines":
        return ["lines      " + " ".join(f"{ext}={state}" for ext, state in data.items())]
    if kind in ("heartbeat", "pong"):
        return []
    details = " ".join(f"{k}={v}" for k, v in data.items() if k not in ("event_id", "type", "at"))
    return [f"{data.get('at', '')[11:19]} {kind:<16} {details}"]


def _describe_pop(card: dict[str, Any]) -> str:
    who = (card.get("client") or {}).get("name") or card.get("caller_name") or ""
    parts = [f"pop {card['state']:<8}", card.get("number_display") or "hidden number", who]
    if card.get("contact"):
        parts.append(f"contact: {card['contact']}")
    if card.get("manager"):
        manager = card["manager"]
        parts.append(f"manager: {manager['name']} ({manager.get('extension') or '-'})")
    if card["ringing"]:
        parts.append("ringing " + ",".join(card["ringing"]))
    if card.get("answered_by"):
        parts.append(f"answered by {card['answered_by']}")
    return "  ".join(p for p in parts if p)


def _modem_probe(args: argparse.Namespace, _config: None) -> int:
    from pydantic import SecretStr

    from cti.config import ModemConfig
    from gsm_modem.probe import probe

    config = ModemConfig(
        name="probe",
        port=args.port,
        baudrate=args.baudrate,
        pin=SecretStr(args.pin) if args.pin else None,
    )
    result = asyncio.run(probe(config, args.timeout))
    status = result.status
    if not result.ready:
        print(f"{args.port}: not ready: {result.detail}")
        for hint in result.hints():
            print(f"  hint: {hint}")
        return 1
    identity = result.identity
    bars = "▮" * int(status.get("signal_bars") or 0)
    print(f"{args.port}: ready")
    print(f"  modem         {identity.get('maker', '')} {identity.get('model', '')}".rstrip())
    print(f"  IMEI          {identity.get('imei') or '-'}")
    print(f"  SIM (IMSI)    {identity.get('imsi') or '-'}: unlocked")
    print(f"  network       {status.get('registration')}, {status.get('operator') or '-'}")
    signal = status.get("signal_dbm")
    print(f"  signal        {f'{signal} dBm' if signal is not None else 'unknown'} {bars}")
    return 0


def _sms_send(args: argparse.Namespace, config: Config) -> int:
    from cti.config import ModemConfig
    from cti.phone import to_e164
    from gsm_modem.probe import send

    number = to_e164(args.number, config.phone.default_region)
    if number is None:
        print(f"cti: {args.number!r} is not a phone number", file=sys.stderr)
        return 2
    if args.port:
        modem = ModemConfig(name="cli", port=args.port)
    else:
        modems = [m for m in config.modem if args.modem in (None, m.name)]
        if not modems:
            wanted = f"no [[modem]] {args.modem!r}" if args.modem else "no [[modem]] configured"
            print(f"cti: {wanted}; name a port with --port", file=sys.stderr)
            return 2
        modem = modems[0]
    try:
        references = asyncio.run(send(modem, number, args.text))
    except Exception as e:  # the modem's or the network's reason, in its words
        print(f"cti: not sent through {modem.port}: {e}", file=sys.stderr)
        return 1
    parts = f"{len(references)} parts" if len(references) > 1 else "1 part"
    refs = ", ".join(map(str, references))
    print(f"sent to {number} through {modem.port}: {parts} (message references {refs})")
    return 0


def _check_config(args: argparse.Namespace, config: Config) -> int:
    import json

    print(json.dumps(config.model_dump(mode="json"), indent=2, ensure_ascii=False))
    return 0


def _with_database(config: Config, work: Callable[[Any], Awaitable[int]]) -> int:
    """Run ``work(engine)`` against the configured database, disposing of it after."""
    from cti.db.engine import create_engine

    async def run() -> int:
        engine = create_engine(config.database_url)
        try:
            return await work(engine)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _db_upgrade(args: argparse.Namespace, config: Config) -> int:
    from cti.db import migrate

    async def work(engine: Any) -> int:
        await migrate.upgrade(engine)
        print(f"database is at revision {await migrate.current_revision(engine)}")
        return 0

    return _with_database(config, work)


def _db_current(args: argparse.Namespace, config: Config) -> int:
    from cti.db import migrate

    async def work(engine: Any) -> int:
        current = await migrate.current_revision(engine)
        print(f"database: {current or 'empty'}\nthis version: {migrate.head_revision()}")
        return 0 if current == migrate.head_revision() else 1

    return _with_database(config, work)


def _user_command(
    args: argparse.Namespace, config: Config, work: Callable[[Any], Awaitable[int]]
) -> int:
    """Run ``work(session)`` on a migrated database; user errors print and exit 1."""
    from cti.auth import UserError
    from cti.db import migrate
    from cti.db.engine import session_factory

    async def with_session(engine: Any) -> int:
        await migrate.check_up_to_date(engine)
        async with session_factory(engine)() as session:
            try:
                status = await work(session)
            except UserError as e:
                print(f"cti: {e}", file=sys.stderr)
                return 1
            await session.commit()
            return status

    try:
        return _with_database(config, with_session)
    except migrate.DatabaseNotMigrated as e:
        return _not_migrated(e, args)


def _read_password() -> str:
    if sys.stdin.isatty():
        first = getpass.getpass("password: ")
        if first != getpass.getpass("again: "):
            raise SystemExit("cti: the passwords differ")
        return first
    return sys.stdin.readline().rstrip("\n")


def _user_add(args: argparse.Namespace, config: Config) -> int:
    from cti import auth

    password = _read_password() if args.password else None
    if password is not None and len(password) < 8:
        print("cti: the password needs at least 8 characters", file=sys.stderr)
        return 1

    async def work(session: Any) -> int:
        owner = await auth.extension_owner(session, args.extension)
        if owner is not None and not args.force:
            print(
                f"cti: extension {args.extension} is already {owner.username}'s phone; "
                "add --force if both really share it",
                file=sys.stderr,
            )
            return 1
        user = await auth.create_user(
            session,
            args.name,
            args.role,
            extension=args.extension,
            display_name=args.display_name,
            password=password,
        )
        token = await auth.issue_token(session, user, label="created with the user")
        print(
            f"added {user.username} ({user.role}"
            f"{', extension ' + user.extension if user.extension else ''})"
        )
        print(f"API token (shown this once): {token}")
        return 0

    return _user_command(args, config, work)


def _user_list(args: argparse.Namespace, config: Config) -> int:
    from cti.db.models import User

    async def work(session: Any) -> int:
        users = (await session.scalars(select(User).order_by(User.username))).all()
        if not users:
            print("no users yet: add one with `cti user add NAME --role ROLE`", file=sys.stderr)
            return 0
        print(f"{'USER':<20} {'ROLE':<13} {'PHONE':<6} NAME")
        for u in users:
            state = "  (disabled)" if not u.is_active else ""
            print(f"{u.username:<20} {u.role:<13} {u.extension or '-':<6} {u.display_name}{state}")
        return 0

    return _user_command(args, config, work)


async def _existing_user(session: Any, name: str) -> Any:
    from cti import auth

    user = await auth.find_user(session, name)
    if user is None:
        raise auth.UserError(f"no user {name!r}")
    return user


def _user_token(args: argparse.Namespace, config: Config) -> int:
    from cti import auth

    async def work(session: Any) -> int:
        user = await _existing_user(session, args.name)
        token = await auth.issue_token(session, user, label="issued with cti user token")
        print(f"API token for {user.username} (shown this once): {token}")
        return 0

    return _user_command(args, config, work)


def _user_revoke(args: argparse.Namespace, config: Config) -> int:
    from cti import auth

    async def work(session: Any) -> int:
        user = await _existing_user(session, args.name)
        count = await auth.revoke_tokens(session, user)
        print(f"revoked {count} token{'s' if count != 1 else ''} of {user.username}")
        return 0

    return _user_command(args, config, work)


def _import_contacts(args: argparse.Namespace, config: Config) -> int:
    import codecs
    from pathlib import Path

    from cti import audit
    from cti.clients import import_export

    mapping: dict[str, str] = {}
    for item in args.map:
        name, sep, column = item.partition("=")
        if not sep or name.strip() not in import_export.FIELDS or not column.strip():
            print(
                f"cti: --map {item}: give FIELD=COLUMN, "
                f"FIELD one of {', '.join(import_export.FIELDS)}",
                file=sys.stderr,
            )
            return 2
        name = name.strip()
        mapping[name] = f"{mapping[name]},{column}" if name in mapping else column
    if args.file != "-" and not Path(args.file).is_file():
        print(f"cti: {args.file}: no such file", file=sys.stderr)
        return 2
    if args.encoding:
        try:
            codecs.lookup(args.encoding)
        except LookupError:
            print(f"cti: --encoding {args.encoding}: unknown encoding", file=sys.stderr)
            return 2
    vcard = args.format == "vcard" or (
        args.format is None and args.file.lower().endswith((".vcf", ".vcard"))
    )
    source = sys.stdin.buffer if args.file == "-" else args.file
    progress = _ProgressBar()

    async def work(session: Any) -> int:
        try:
            if vcard:
                report = await import_export.import_vcard(
                    session,
                    source,
                    region=config.phone.default_region,
                    encoding=args.encoding,
                    dry_run=args.dry_run,
                    progress=progress,
                )
            else:
                report = await import_export.import_csv(
                    session,
                    source,
                    region=config.phone.default_region,
                    mapping=mapping,
                    encoding=args.encoding,
                    dry_run=args.dry_run,
                    progress=progress,
                )
            if not args.dry_run:  # clients and their responsible managers, from the shell
                audit.record(
                    session,
                    None,
                    "clients.import",
                    f"file:{Path(args.file).name}"[:100],
                    {"rows": report.rows, "clients": report.clients},
                )
            await session.commit()
        except import_export.MappingError as e:
            await session.rollback()
            print(f"cti: {e}", file=sys.stderr)
            return 2
        except Exception as e:  # a database or file error: the transaction is rolled back
            await session.rollback()
            reason = (str(e).strip() or type(e).__name__).splitlines()[0]
            print(f"cti: the import failed, nothing was imported: {reason}", file=sys.stderr)
            return 1
        finally:
            progress.done()
        counts = (
            f"{report.clients} clients, {report.contacts} contacts and {report.phones} phones "
            f"from {report.rows} rows in {report.elapsed:.1f} s"
        )
        print(f"dry run, nothing written: would import {counts}" if args.dry_run else counts)
        if report.rejected:
            print(f"rejected {len(report.rejected)} rows:")
            for line, reason in report.rejected[:50]:
                print(f"  line {line}: {reason}")
            if len(report.rejected) > 50:
                print(f"  ... and {len(report.rejected) - 50} more")
        if report.shared:
            print(
                f"{len(report.shared)} numbers belong to more than one client "
                "(a lookup names them all and picks none):"
            )
            for shared in report.shared[:50]:
                names = ", ".join(client["name"] for client in shared["clients"])
                print(f"  {shared['number']}: {names}")
            if len(report.shared) > 50:
                print(f"  ... and {len(report.shared) - 50} more")
        return 0

    return _user_command(args, config, work)


class _ProgressBar:
    """Import progress on stderr for big files: a line redrawn in place on a terminal,
    else a line every 10%."""

    MIN_BYTES = 1_000_000

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.shown = -1  # the last percentage printed

    def __call__(self, done: int, total: int | None) -> None:
        if not total or total < self.MIN_BYTES:
            return
        percent = min(100, done * 100 // total)
        if self.tty:
            bar = "#" * (percent // 4)
            sys.stderr.write(f"\rimporting [{bar:<25}] {percent:3d}% of {total / 1e6:.1f} MB")
            sys.stderr.flush()
        elif percent // 10 > self.shown // 10:
            print(f"importing: {percent}% of {total / 1e6:.1f} MB", file=sys.stderr, flush=True)
        self.shown = percent

    def done(self) -> None:
        if self.tty and self.shown >= 0:
            sys.stderr.write("\n")


def _export_contacts(args: argparse.Namespace, config: Config) -> int:
    from cti.clients import import_export

    async def work(session: Any) -> int:
        if args.file == "-":
            rows = await import_export.export_csv(session, sys.stdout.buffer)
            sys.stdout.buffer.flush()
        else:
            with open(args.file, "wb") as out:  # noqa: ASYNC230 (a local file, written in batches)
                rows = await import_export.export_csv(session, out)
        print(f"exported {rows} rows to {args.file}", file=sys.stderr)
        return 0

    try:
        return _user_command(args, config, work)
    except OSError as e:
        print(f"cti: {args.file}: {e.strerror}", file=sys.stderr)
        return 1
