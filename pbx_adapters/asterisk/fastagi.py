"""FastAGI inside the service: ``AGI(agi://host:4573/lookup)`` and ``.../route``.

Same answers as the ``cti-agi`` script (``agi.agi_variables``), from the in-process
directory, with no HTTP hop. Built on panoramisk's FastAGI ``Application`` (routes,
``Request.send_command``), with its request reader replaced: panoramisk 1.4 spins the
event loop forever on a connection that closes before the blank line ending the AGI
environment (or ends its lines with CRLF), and drops the request on one invalid UTF-8 byte.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from panoramisk.fast_agi import Application, Request

from cti.directory import Directory, Match
from cti.pbx import PbxContext
from pbx_adapters.asterisk.agi import (
    COMMANDS,
    agi_variables,
    normalize_caller,
    parse_agi_environment,
    set_variable_command,
)

log = logging.getLogger("cti.fastagi")

MAX_ENVIRONMENT_BYTES = 16 * 1024  # a real AGI environment is under 1 KiB
CONVERSATION_TIMEOUT = 10.0  # environment, lookup and answers, per connection


def parse_listen(value: str) -> tuple[str, int]:
    """``"127.0.0.1:4573"`` (``[agi] fastagi_listen``) as (host, port)."""
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{value!r} is not host:port")
    return host, int(port)


class FastAgiServer:
    """Answers FastAGI ``lookup`` and ``route`` requests; ``start`` then ``stop``."""

    def __init__(
        self,
        directory: Directory,
        region: str,
        *,
        lookup_timeout: float = 1.0,
        listen: tuple[str, int] = ("127.0.0.1", 4573),
    ) -> None:
        self.directory = directory
        self.region = region
        self.lookup_timeout = lookup_timeout  # on expiry the caller is unknown
        self.listen = listen
        self._server: asyncio.Server | None = None
        self._conversations: set[asyncio.Task[Any]] = set()

    @classmethod
    def listening_on(
        cls, listen: str, context: PbxContext, *, lookup_timeout: float
    ) -> FastAgiServer:
        """The server ``[agi] fastagi_listen`` asks for, on the service's directory."""
        return cls(
            context.directory,
            context.region,
            lookup_timeout=lookup_timeout,
            listen=parse_listen(listen),
        )

    async def start(self, host: str | None = None, port: int | None = None) -> None:
        host = self.listen[0] if host is None else host
        port = self.listen[1] if port is None else port
        app = _Application(self._conversations)
        for command in COMMANDS:
            app.add_route(command, self._answer)
        self._server = await asyncio.start_server(
            app.handler, host, port, limit=MAX_ENVIRONMENT_BYTES
        )
        log.info("FastAGI listening", extra={"fields": {"address": f"{host}:{self.port}"}})

    @property
    def port(self) -> int:
        """The port listened on (the real one when 0 was asked)."""
        if self._server is None:
            raise RuntimeError("the FastAGI server is not started")
        return self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for task in list(self._conversations):
            task.cancel()
        await asyncio.gather(*self._conversations, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None

    async def _answer(self, request: Request) -> None:
        command = _script(request.headers)
        number = normalize_caller(request.headers.get("agi_callerid", ""), self.region)
        match = await self._lookup(number) if number is not None else None
        for name, value in agi_variables(command, match).items():
            try:
                result = await request.send_command(set_variable_command(name, value))
            except ValueError:  # panoramisk: an empty answer line, the PBX hung up
                return
            if "error" in result:
                log.info("FastAGI: PBX refused", extra={"fields": {"answer": result}})
                return

    async def _lookup(self, number: str) -> Match | None:
        try:
            async with asyncio.timeout(self.lookup_timeout):
                found = await self.directory.lookup(number)
                return found if isinstance(found, Match) else None  # shared: nobody
        except TimeoutError:
            log.warning("FastAGI: the directory did not answer in time; caller unknown")
        except Exception:
            log.exception("FastAGI: the directory failed; caller unknown")
        return None


async def start_fastagi(
    directory: Directory, region: str, host: str, port: int, *, lookup_timeout: float = 1.0
) -> FastAgiServer:
    server = FastAgiServer(directory, region, lookup_timeout=lookup_timeout)
    await server.start(host, port)
    return server


class _Application(Application):
    def __init__(self, conversations: set[asyncio.Task[Any]]) -> None:
        super().__init__(default_encoding="utf-8")
        self._conversations = conversations

    async def handler(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One FastAGI connection: read the environment, run its route, close."""
        task = asyncio.current_task()
        if task is not None:
            self._conversations.add(task)
        try:
            async with asyncio.timeout(CONVERSATION_TIMEOUT):
                environment = await _read_environment(reader)
                if environment is None:
                    return
                headers = parse_agi_environment(environment)
                script = _script(headers)
                route = self._route.get(script)
                if route is None:
                    log.warning("FastAGI: no such script", extra={"fields": {"script": script}})
                    return
                await route(Request(self, headers, reader, writer, self.default_encoding))
        except TimeoutError:
            log.warning("FastAGI: conversation timed out")
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the PBX hung up
        except Exception:
            log.exception("FastAGI: request failed")
        finally:
            writer.close()
            if task is not None:
                self._conversations.discard(task)


def _script(headers: Mapping[str, str]) -> str:
    # Asterisk sends everything after the host's "/": agi://host/lookup?x=1 -> "lookup?x=1".
    return headers.get("agi_network_script", "").partition("?")[0].strip("/")


async def _read_environment(reader: asyncio.StreamReader) -> bytes | None:
    """The bytes up to the blank line; None when the peer closes first or sends too much."""
    data = bytearray()
    while True:
        try:
            line = await reader.readline()
        except ValueError:  # a line over the stream's limit
            return None
        if not line.endswith(b"\n"):
            return None  # closed before the blank line
        if not line.strip():
            return bytes(data)
        data += line
        if len(data) > MAX_ENVIRONMENT_BYTES:
            return None
