"""The network SMDR login of a Panasonic PBX (sans-I/O).

The PBX's SMDR port talks like a telnet terminal: it asks for a user ID (``SMDR``) and
the password set for SMDR in PBX programming, then prints the records. The manuals
name the user and the password, not the prompts' words, so a prompt is any text ending
in "login:", "user...:" or "password:", case aside. Telnet option negotiation (IAC
sequences) is declined.
"""

from __future__ import annotations

import re
from enum import Enum

IAC, DONT, DO, WONT, WILL, SB, SE = 255, 254, 253, 252, 251, 250, 240
USER_PROMPT = re.compile(rb"(?:login|user(?:\s*(?:name|id))?)\s*:\s*$", re.IGNORECASE)
PASSWORD_PROMPT = re.compile(rb"password\s*:\s*$", re.IGNORECASE)
REFUSED = re.compile(rb"incorrect|invalid|denied|failed|error", re.IGNORECASE)
MAX_GREETING = 4096


class LoginState(Enum):
    USER = "user"
    PASSWORD = "password"  # noqa: S105 (a state's name)
    SENT = "sent"  # the password went: the PBX's next words say whether it took it
    DONE = "done"
    REFUSED = "refused"


class SmdrLogin:
    def __init__(self, user: str, password: str) -> None:
        self.user, self.password = user, password
        self.state = LoginState.USER
        self._seen = b""
        self.reason = ""

    @property
    def ready(self) -> bool:
        return self.state in (LoginState.SENT, LoginState.DONE)

    @property
    def refused(self) -> str:
        return self.reason

    def receive(self, data: bytes) -> tuple[bytes, bytes]:
        """(what to send back, what is record stream) for bytes from the PBX."""
        if self.state is LoginState.DONE:
            return b"", data
        text, reply = _without_telnet_options(data)
        self._seen += text
        if self.state is LoginState.USER and USER_PROMPT.search(self._seen):
            self.state, self._seen = LoginState.PASSWORD, b""
            return reply + self.user.encode() + b"\r\n", b""
        if self.state is LoginState.PASSWORD:
            if PASSWORD_PROMPT.search(self._seen):
                self.state, self._seen = LoginState.SENT, b""
                return reply + self.password.encode() + b"\r\n", b""
            if REFUSED.search(self._seen):
                return self._refuse("the PBX refused the user ID")
        if self.state is LoginState.SENT and self._seen.strip():
            # A wrong password brings a refusal or the login prompt back.
            head = self._seen[:200]
            if REFUSED.search(head) or USER_PROMPT.search(head.rstrip()):
                return self._refuse("the PBX refused the SMDR password")
            self.state, stream, self._seen = LoginState.DONE, self._seen, b""
            return reply, stream
        if len(self._seen) > MAX_GREETING:
            return self._refuse("no login prompt from the PBX")
        return reply, b""

    def _refuse(self, reason: str) -> tuple[bytes, bytes]:
        self.state, self.reason = LoginState.REFUSED, reason
        return b"", b""


def _without_telnet_options(data: bytes) -> tuple[bytes, bytes]:
    """The text of ``data``, and the refusals of any telnet options the PBX asks for."""
    text, reply, i = bytearray(), bytearray(), 0
    while i < len(data):
        byte = data[i]
        if byte != IAC or i + 1 >= len(data):
            text.append(byte)
            i += 1
            continue
        command = data[i + 1]
        if command in (DO, DONT, WILL, WONT) and i + 2 < len(data):
            option = data[i + 2]
            if command == DO:
                reply += bytes([IAC, WONT, option])
            elif command == WILL:
                reply += bytes([IAC, DONT, option])
            i += 3
        elif command == SB:
            end = data.find(bytes([IAC, SE]), i)
            i = len(data) if end < 0 else end + 2
        else:
            i += 2
    return bytes(text), bytes(reply)
