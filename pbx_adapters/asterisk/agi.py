"""Caller lookup and routing for Asterisk AGI: the shared rules and the ``cti-agi`` script.

The dialplan asks two questions about an inbound caller::

    same => n,AGI(cti-agi,lookup)   ; sets CALLERID(name) when the caller is a known client
    same => n,AGI(cti-agi,route)    ; sets CTI_MANAGER_EXTENSION ("" when unknown)

(or ``AGI(agi://host:4573/lookup)`` against the FastAGI server in ``fastagi.py``).
The rules here are sans-I/O; the script asks the service over HTTP. Whatever fails, the
script sets the "unknown" answer and exits 0: a call must never wait on the CRM.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import sys
import threading
import unicodedata
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlencode, urlsplit

from cti.directory import Match, ResponsibleManager
from cti.domain import EXTENSION_PATTERN
from cti.phone import to_e164

if TYPE_CHECKING:
    from pbx_adapters.asterisk.settings import AgiConfig

COMMANDS = ("lookup", "route")
CALLER_NAME = "CALLERID(name)"
MANAGER_EXTENSION = "CTI_MANAGER_EXTENSION"

MAX_VALUE_CHARS = 80  # a caller name on a phone display; also keeps the AGI line short
MAX_CALLER_CHARS = 32
MAX_EXTENSION_DIGITS = 6  # 2-6 digit caller IDs are internal extensions, not clients
MAX_RESPONSE_BYTES = 64 * 1024

# The forms a caller ID takes: +7 (812) 555-01-02, 88125550102, ...; anything else
# (letters, line breaks, "unknown", "anonymous") is not a number to look up.
_CALLER_FORM = re.compile(r"\+?[0-9 ().\-]+")
# A double quote would end the quoted AGI argument, a backslash escapes the next character.
_UNQUOTABLE = dict.fromkeys(map(ord, '"\\'), None)


class LookupFailed(Exception):
    """The directory could not be asked; the message says why, without secrets."""


def normalize_caller(raw: str, region: str) -> str | None:
    """The caller as an E.164 number, or None for extensions, withheld IDs and garbage."""
    text = raw.strip()
    if not text or len(text) > MAX_CALLER_CHARS or not _CALLER_FORM.fullmatch(text):
        return None
    digits = sum(c.isdigit() for c in text)
    if digits == 0 or (not text.startswith("+") and digits <= MAX_EXTENSION_DIGITS):
        return None
    return to_e164(text, region)  # the same E.164 the call tracker and the directory use


def agi_value(text: str, limit: int = MAX_VALUE_CHARS) -> str:
    """``text`` made safe as a quoted ``SET VARIABLE`` argument; any script survives."""
    kept = "".join(
        " " if unicodedata.category(c) in ("Cc", "Cs") else c  # CR, LF, NUL, lone surrogates
        for c in text.translate(_UNQUOTABLE)
    )
    return " ".join(kept.split())[:limit].rstrip()


def agi_variables(command: str, match: Match | None) -> dict[str, str]:
    """The channel variables to set for ``command`` ("lookup" or "route")."""
    if command == "lookup":
        if match is None:
            return {}  # leave the name the PBX already has
        client = agi_value(match.client_name)
        contact = agi_value(match.contact_name or "")
        name = agi_value(f"{contact} — {client}") if contact and client else client or contact
        return {CALLER_NAME: name} if name else {}
    if command == "route":
        manager = match.manager if match is not None else None
        extension = (manager.extension or "") if manager is not None else ""
        # The value lands in Dial(PJSIP/${CTI_MANAGER_EXTENSION}): only digits may pass.
        if not EXTENSION_PATTERN.fullmatch(extension):
            extension = ""
        return {MANAGER_EXTENSION: extension}
    raise ValueError(f"unknown AGI command {command!r}; expected one of {', '.join(COMMANDS)}")


def set_variable_command(name: str, value: str) -> str:
    """The AGI command line (without its newline) that sets one channel variable."""
    return f'SET VARIABLE "{agi_value(name, 200)}" "{agi_value(value)}"'


def parse_agi_environment(data: bytes) -> dict[str, str]:
    """``agi_key: value`` lines (LF or CRLF) as a dict; bad UTF-8 is replaced, not fatal."""
    env: dict[str, str] = {}
    for line in data.decode("utf-8", errors="replace").splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip():
            env[key.strip()] = value.strip()
    return env


def match_from_answer(body: Any) -> Match | None:
    """The match in a ``GET /api/lookup`` answer; LookupFailed when it is not one."""
    if not isinstance(body, dict) or "match" not in body:
        raise LookupFailed("the service's answer has no 'match'")
    data = body["match"]
    if data is None:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("client_name"), str):
        raise LookupFailed("the service's answer has no client name")
    manager = data.get("manager")
    return Match(
        client_id=str(data.get("client_id", "")),
        client_name=data["client_name"],
        contact_name=_str_or_none(data.get("contact_name")),
        manager=ResponsibleManager(
            name=_str_or_none(manager.get("name")) or "",
            extension=_str_or_none(manager.get("extension")),
        )
        if isinstance(manager, dict)
        else None,
    )


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    # urllib would resend the Authorization header to wherever a redirect points.
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


# No proxies from the environment either: the token goes to the service only.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirects())


def http_lookup(number: str, config: AgiConfig) -> Match | None:
    """Ask the service's ``GET /api/lookup`` who ``number`` (E.164) is."""
    if config.token is None or not config.token.get_secret_value():
        raise LookupFailed("no [agi] token is configured")
    base = config.service_url.rstrip("/")
    if urlsplit(base).scheme not in ("http", "https"):
        raise LookupFailed("[agi] service_url must start with http:// or https://")
    request = urllib.request.Request(  # noqa: S310 (the scheme is checked above)
        f"{base}/api/lookup?{urlencode({'number': number})}",
        headers={
            "Authorization": f"Bearer {config.token.get_secret_value()}",
            "Accept": "application/json",
        },
    )
    try:
        with _opener.open(request, timeout=config.timeout) as response:
            raw = response.read(MAX_RESPONSE_BYTES + 1)
    except urllib.error.HTTPError as e:
        e.close()
        raise LookupFailed(f"the service answered HTTP {e.code}") from None
    except urllib.error.URLError as e:
        raise LookupFailed(f"the service is unreachable ({e.reason})") from None
    except (OSError, ValueError, http.client.HTTPException) as e:  # timeouts, resets, bad HTTP
        raise LookupFailed(f"the service is unreachable ({str(e) or type(e).__name__})") from None
    if len(raw) > MAX_RESPONSE_BYTES:
        raise LookupFailed("the service's answer is too long")
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise LookupFailed("the service's answer is not JSON") from None
    return match_from_answer(body)


Lookup = Callable[[str], Match | None]


def with_deadline(lookup: Lookup, seconds: float) -> Lookup:
    """``lookup`` bounded in total time; socket timeouts alone bound each read, not the sum."""

    def bounded(number: str) -> Match | None:
        outcome: dict[str, Any] = {}

        def target() -> None:
            try:
                outcome["match"] = lookup(number)
            except BaseException as e:
                outcome["error"] = e

        worker = threading.Thread(target=target, name="cti-agi-lookup", daemon=True)
        worker.start()
        worker.join(seconds)
        if worker.is_alive():
            raise LookupFailed(f"the service did not answer within {seconds:g} s")
        if "error" in outcome:
            raise outcome["error"]
        return outcome.get("match")

    return bounded


class AgiChannel(Protocol):
    """What ``run`` needs of pyst2's ``AGI``."""

    env: Mapping[str, str]

    def set_variable(self, name: str, value: str) -> None: ...

    def verbose(self, message: str, level: int = 1) -> None: ...


def run(command: str, agi: AgiChannel, lookup: Lookup, region: str) -> int:
    """Answer one AGI request; always 0, so Asterisk carries on with the call."""
    try:
        agi_variables(command, None)
    except ValueError:
        _verbose(agi, f"unknown command {command!r}: use AGI(cti-agi,lookup) or AGI(cti-agi,route)")
        return 0
    match, reason = None, ""
    number = normalize_caller(agi.env.get("agi_callerid", ""), region)
    if number is not None:
        try:
            match = lookup(number)
        except LookupFailed as e:
            reason = str(e)
        except Exception as e:
            reason = f"the lookup failed ({type(e).__name__})"
    try:
        for name, value in agi_variables(command, match).items():
            agi.set_variable(name, value)
    except Exception:
        return 0  # the caller hung up or Asterisk went away: nobody left to tell
    if reason:
        _verbose(agi, f"{command}: {reason}; the caller is treated as unknown")
    return 0


def _verbose(agi: AgiChannel, message: str) -> None:
    try:
        agi.verbose(agi_value(f"cti-agi: {message}", 300), 1)
    except Exception:  # noqa: S110 (a hangup while reporting changes nothing)
        pass


def _unavailable(reason: str) -> Lookup:
    def lookup(number: str) -> Match | None:
        raise LookupFailed(reason)

    return lookup


def _open_agi() -> AgiChannel:
    import io

    from asterisk.agi import AGI  # pyst2

    # UTF-8 whatever the locale Asterisk starts us in; pyst2's own chatter on stderr
    # (the whole AGI environment, every command) stays out of the Asterisk log.
    return AGI(
        stdin=io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="replace"),
        stdout=io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", errors="replace"),
        stderr=open(os.devnull, "w", encoding="utf-8"),
    )


def main(argv: list[str] | None = None) -> int:
    """``cti-agi lookup|route``: the arguments after the program name, as in ``AGI(cti-agi,X)``.

    Configuration: the file named by ``CTI_CONFIG`` (or defaults) with ``CTI_*`` overrides;
    it needs ``[agi] service_url`` and ``token`` (a receptionist's API token).
    """
    from cti.config import PhoneConfig, load_config

    args = sys.argv[1:] if argv is None else argv
    command = args[0].strip().lower() if args else ""
    try:
        agi = _open_agi()
    except Exception:
        return 0  # not started by Asterisk, or stdin unreadable: nothing to answer
    region = PhoneConfig().default_region
    try:
        config = load_config(os.environ.get("CTI_CONFIG") or None)
    except Exception as e:  # no details but the kind: a configuration error may quote a token
        where = os.environ.get("CTI_CONFIG") or "the default file"
        lookup = _unavailable(
            f"the configuration ({where}) cannot be read ({type(e).__name__}); "
            "check it with cti check-config"
        )
    else:
        region = config.phone.default_region
        agi_config = config.agi
        lookup = with_deadline(lambda n: http_lookup(n, agi_config), agi_config.timeout)
    return run(command, agi, lookup, region)


if __name__ == "__main__":
    raise SystemExit(main())
