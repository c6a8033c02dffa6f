"""Structured logging with secret redaction.

Every record passes a redactor before it is formatted, so a secret that slips into a
message, an argument or an exception text (an AMI secret, a SIM PIN, an API token, a
password) is replaced by ``***`` instead of reaching the log.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

REDACTED = "***"

# Shapes of secrets that need no registration: API tokens, bearer headers, AMI login
# fields, key=value pairs whose key says "secret".
_PATTERNS = [
    re.compile(r"cti_[A-Za-z0-9_-]{20,}"),
    re.compile(r"(?i)(bearer\s+)[^\s,;\"']+"),
    re.compile(r"(?im)^((?:secret|password|key)\s*:\s*).+$"),
    re.compile(r"(?i)\b((?:secret|password|passwd|pin|token)[\"']?\s*[=:]\s*[\"']?)[^\s,;\"'&}]+"),
]


class SecretRedactor(logging.Filter):
    """Replaces registered secret values and secret-shaped text in log records."""

    def __init__(self) -> None:
        super().__init__()
        self._values: set[str] = set()

    def add_secret(self, value: str) -> None:
        # Very short values would blank out ordinary words; they are still caught by the
        # key=value patterns above.
        if len(value) >= 4:
            self._values.add(value)

    def redact(self, text: str) -> str:
        for value in self._values:
            text = text.replace(value, REDACTED)
        for pattern in _PATTERNS:
            text = pattern.sub(
                lambda m: (m.group(1) if m.groups() else "") + REDACTED,
                text,
            )
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.redact(record.getMessage())
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            # Format the traceback now, redacted, so the formatter does not re-add it raw.
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            record.fields = {k: self._redact_value(v) for k, v in extra.items()}
        return True

    def _redact_value(self, value: Any) -> Any:
        return self.redact(value) if isinstance(value, str) else value


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (UTC), level, logger, message and any ``fields``."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_text:
            entry["exception"] = record.exc_text
        elif record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict) and fields:
            text += " " + " ".join(f"{k}={v}" for k, v in fields.items())
        return text


redactor = SecretRedactor()


def setup_logging(level: str = "info", fmt: str = "json", stream: Any = None) -> None:
    """Configure the root logger once; safe to call again (it replaces our handler)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(redactor)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.set_name("cti")
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "cti"]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # aiosqlite's debug lines carry every SQL parameter (password and token hashes, SMS
    # texts); the statements themselves are in [database] echo, without their parameters.
    logging.getLogger("aiosqlite").setLevel(max(root.level, logging.INFO))
