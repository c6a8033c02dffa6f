"""Phone numbers: E.164 for storage, a dialable form for the PBX (with ``phonenumbers``)."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import phonenumbers

# What a person may type for a number: digits, a leading +, spaces, dashes, dots,
# parentheses. Anything else (letters, CR/LF, ';', '&') is not a phone number.
_TYPED_NUMBER = re.compile(r"^\+?[0-9 ()./-]{1,40}$")
_SHORT_EXTENSION = re.compile(r"^[0-9]{2,6}$")


class NotAPhoneNumber(ValueError):
    pass


# A number as people write it in a CRM or a search box: digits, separators, a + and an
# optional extension ("доб. 12", "ext. 12", "x12", "#12"). No control characters.
_WRITTEN_NUMBER = re.compile(
    r"^[+0-9 ()./\-]{2,40}(?:[,;]?\s*(?:доб|ext|x|#)\.?\s*[0-9]{1,8})?$", re.IGNORECASE
)


@dataclass(frozen=True, slots=True)
class ParsedNumber:
    """A number someone wrote: its E.164 form when it is a valid phone number, else only
    its digits (a short extension, or a number the PBX sent without its area code)."""

    e164: str | None
    digits: str
    extension: str | None = None


def parse_number(raw: str, region: str) -> ParsedNumber:
    """Parse a written number (with an optional extension); NotAPhoneNumber for text that
    is not one, such as letters, line breaks or separators out of place."""
    if any(ord(ch) < 32 for ch in raw):
        raise NotAPhoneNumber("not a phone number: it contains control characters")
    text = " ".join(raw.split())
    if not _WRITTEN_NUMBER.match(text):
        raise NotAPhoneNumber("not a phone number")
    main, extension = text, None
    found = re.search(r"[,;]?\s*(?:доб|ext|x|#)\.?\s*([0-9]{1,8})$", text, re.IGNORECASE)
    if found:
        main, extension = text[: found.start()], found.group(1)
    e164 = to_e164(main, region)
    digits = re.sub(r"[^0-9]", "", main)
    if e164 is None and not 2 <= len(digits) <= 15:
        raise NotAPhoneNumber("not a phone number")
    return ParsedNumber(e164, e164[1:] if e164 else digits, extension)


@functools.lru_cache(maxsize=8192)  # a PBX names a call's number in frame after frame
def to_e164(raw: str | None, region: str) -> str | None:
    """The E.164 form of a number as a PBX or a person wrote it; None when it is not a
    valid phone number (internal extensions, 'anonymous', garbage)."""
    if not raw or len(raw) > 40:
        return None
    text = raw.strip()
    if text.startswith("00"):  # international prefix written the ITU way
        text = "+" + text[2:]
    elif region == "RU" and text.startswith("810") and len(text) > 11:
        text = "+" + text[3:]  # Russia's old international prefix 8-10
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def is_extension(text: str) -> bool:
    return bool(_SHORT_EXTENSION.match(text))


def dialable(raw: str, region: str, *, dial_format: str = "local", prefix: str = "") -> str:
    """The digits to hand the PBX for a number a user clicked or typed.

    Short internal extensions pass unchanged. Other numbers must be valid phone numbers:
    ``local`` dials them as a phone in ``region`` would (8 812 ... in Russia, 8 10 ...
    abroad), ``e164`` as +<country><number>. Raises NotAPhoneNumber otherwise.
    """
    text = raw.strip()
    if not _TYPED_NUMBER.match(text):
        raise NotAPhoneNumber("not a phone number: only digits, +, spaces, ( ) - . allowed")
    digits = re.sub(r"[^0-9+]", "", text)
    if is_extension(digits):
        return digits
    e164 = to_e164(text, region)
    if e164 is None:
        raise NotAPhoneNumber("not a valid phone number")
    if dial_format == "e164":
        return prefix + e164
    number = phonenumbers.parse(e164)
    local = phonenumbers.format_out_of_country_calling_number(number, region)
    return prefix + re.sub(r"[^0-9]", "", local)
