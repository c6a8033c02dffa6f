"""Phone numbers as people and PBXs write them: parsed right, and anything else refused
with NotAPhoneNumber (a 422 at the API), never another exception."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cti.phone import NotAPhoneNumber, dialable, parse_number, to_e164


@pytest.mark.parametrize(
    ("written", "e164", "extension"),
    [
        ("8 (812) 123-45-67", "+78121234567", None),
        ("+7 812 1234567", "+78121234567", None),
        ("0078121234567", "+78121234567", None),
        ("810995322123456", "+995322123456", None),
        ("8 812 123 45 67 доб. 12", "+78121234567", "12"),
        ("+7 812 1234567 ext. 12", "+78121234567", "12"),
        ("+7 812 1234567 x12", "+78121234567", "12"),
        ("+995 32 212 34 56", "+995322123456", None),
    ],
)
def test_written_forms(written: str, e164: str, extension: str | None) -> None:
    parsed = parse_number(written, "RU")
    assert (parsed.e164, parsed.extension) == (e164, extension)


def test_short_numbers_keep_their_digits() -> None:
    assert parse_number("101", "RU").e164 is None
    assert parse_number("101", "RU").digits == "101"
    assert dialable("101", "RU") == "101"  # an extension is dialled as it is


def test_dialable_forms() -> None:
    assert dialable("+7 812 555-01-07", "RU") == "88125550107"
    assert dialable("+995 32 212 34 56", "RU") == "810995322123456"
    assert dialable("+7 812 555-01-07", "RU", dial_format="e164", prefix="9") == "9+78125550107"


NASTY = st.one_of(
    st.text(max_size=60),
    st.text(alphabet="+0123456789 ()-.\r\n\t;&|`$доб.extx#,", max_size=60),
    st.from_regex(r"\+?[0-9 ()-]{0,30}(\r\n[A-Za-z]+: .*)?", fullmatch=True),
)


@settings(max_examples=400, deadline=None)
@given(NASTY, st.sampled_from(["RU", "GE", "KH", "GB", "US"]))
def test_parsers_refuse_or_answer_but_never_crash(text: str, region: str) -> None:
    try:
        parsed = parse_number(text, region)
    except NotAPhoneNumber:
        pass
    else:
        assert parsed.digits.isdigit()
        assert "\r" not in parsed.digits and "\n" not in parsed.digits
        if parsed.e164 is not None:
            assert parsed.e164.startswith("+") and parsed.e164[1:].isdigit()
    try:
        digits = dialable(text, region)
    except NotAPhoneNumber:
        pass
    else:
        assert digits.lstrip("+").isdigit()  # nothing but digits ever reaches the PBX
    result = to_e164(text, region)
    assert result is None or (result.startswith("+") and result[1:].isdigit())


NASTY_TEXTS = [
    "",
    " ",
    "+",
    "++7",
    "8 (812) 123-45-67\r\nAction: Originate",
    "+7 812; rm -rf /",
    "$(reboot)",
    "`id`",
    "1" * 41,
    "доб. 12",
    "x12",
    "+7 (812) 123-45-67 доб. ",
    "%00",
    "\x00",
    "📞 +7 812",
    "٠١٢٣٤٥٦٧٨٩",
    "+٧ ٨١٢",
    "null",
    "[]",
    "{}",
    "8" * 15,
    "+0",
]


async def test_lookup_endpoint_answers_200_or_422_to_any_text(client, make_user) -> None:
    import random

    rng = random.Random(5)
    alphabet = "+0123456789 ()-.\r\n\t;&|`$доб.extx#,💥ä"
    texts = NASTY_TEXTS + ["".join(rng.choices(alphabet, k=rng.randint(1, 40))) for _ in range(150)]
    token = await make_user("receptionist", "100")
    for text in texts:
        response = await client.get(
            "/api/lookup", params={"number": text}, headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status in (200, 422), (text, await response.text())
