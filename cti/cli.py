"""The ``cti`` command line."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
from collections.abc import Awaitable, Callable
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
        config = load_config(args.config) if hasattr(args, "config") else None
        return args.run(args, config)
    except ConfigError as e:
        print(f"cti: configuration error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


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
                help="TOML configuration file (default: $CTI_CONFIG, else built-in defaults; "
                "CTI_* environment variables override it)",
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
    return parser


def _serve(args: argparse.Namespace, config: Config) -> int:
    from cti.db.migrate import DatabaseNotMigrated
    from cti.logs import setup_logging
    from cti.service import serve

    setup_logging(config.server.log_level, config.server.log_format)
    try:
        asyncio.run(serve(config))
    except DatabaseNotMigrated as e:
        print(f"cti: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(
            f"cti: cannot listen on {config.server.host}:{config.server.port}: {e.strerror}",
            file=sys.stderr,
        )
        return 1
    return 0


def _demo(args: argparse.Namespace, _config: None) -> int:
    from cti.demo import run_demo

    return run_demo(host=args.host, port=args.port, data_dir=args.data_dir)


def _watch(args: argparse.Namespace, _config: None) -> int:
    import json

    import aiohttp

    if not args.token:
        print("cti watch: give a token with --token or $CTI_TOKEN", file=sys.stderr)
        return 2

    async def run() -> int:
        url = args.url.rstrip("/") + "/ws"
        async with aiohttp.ClientSession() as http:
            try:
                ws = await http.ws_connect(url, headers={"Authorization": f"Bearer {args.token}"})
            except aiohttp.WSServerHandshakeError as e:
                print(f"cti watch: {url}: {e.status} {e.message}", file=sys.stderr)
                return 1
            except aiohttp.ClientError as e:
                print(f"cti watch: {url}: {e}", file=sys.stderr)
                return 1
            async for message in ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    break
                frame = json.loads(message.data)
                if frame["type"] == "hello":
                    print(f"connected as {frame['user']['username']}", flush=True)
                    continue
                data = frame.get("data", {})
                details = " ".join(
                    f"{k}={v}" for k, v in data.items() if k not in ("event_id", "type", "at")
                )
                print(f"{data.get('at', '')[11:19]} {frame['type']:<16} {details}", flush=True)
        return 0

    return asyncio.run(run())


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


def _user_command(config: Config, work: Callable[[Any], Awaitable[int]]) -> int:
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
        print(f"cti: {e}", file=sys.stderr)
        return 1


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

    return _user_command(config, work)


def _user_list(args: argparse.Namespace, config: Config) -> int:
    from cti.db.models import User

    async def work(session: Any) -> int:
        users = (await session.scalars(select(User).order_by(User.username))).all()
        for u in users:
            state = "" if u.is_active else "  (disabled)"
            print(f"{u.username:<20} {u.role:<13} {u.extension or '-':<6} {u.display_name}{state}")
        return 0

    return _user_command(config, work)


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

    return _user_command(config, work)


def _user_revoke(args: argparse.Namespace, config: Config) -> int:
    from cti import auth

    async def work(session: Any) -> int:
        user = await _existing_user(session, args.name)
        count = await auth.revoke_tokens(session, user)
        print(f"revoked {count} token{'s' if count != 1 else ''} of {user.username}")
        return 0

    return _user_command(config, work)
