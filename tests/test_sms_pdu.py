"""The SMS PDU codec: published PDUs of other codecs, round trips, part boundaries, the
baseline codec (python-gsmmodem-new) both ways, and fuzzing: bad input is a PduError."""

from datetime import UTC, datetime, timedelta, timezone
from itertools import pairwise
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gsm_modem import gsm7
from gsm_modem.pdu import (
    Concat,
    Deliver,
    PduError,
    Reassembler,
    StatusReport,
    Submit,
    decode,
    encode_deliver,
    encode_submit,
    sms_parts_needed,
)

# Sources of the published vectors:
GSMMODEM = "faucamp/python-gsmmodem test/test_pdu.py"
MODEMMANAGER = "linux-mobile-broadband/ModemManager src/tests/test-sms-part-3gpp.c"
SMSPDUDECODER = "qotto/smspdudecoder smspdudecoder/fields.py (doctests)"


def tz(hours: float) -> timezone:
    return timezone(timedelta(hours=hours))


# --- GSM 7-bit ------------------------------------------------------------------------


def test_alphabet_tables() -> None:
    assert len(gsm7.DEFAULT) == 128
    assert sorted(gsm7.EXTENSION.values()) == sorted("\f^{}\\[~]|€")


@pytest.mark.parametrize(
    ("text", "packed"),
    [
        ("hellohello", "E8329BFD4697D9EC37"),  # GSM 03.40 example, in MODEMMANAGER test_pdu3
        # GSMMODEM TestGsm7 (septets as decimal octets there)
        ("123", bytes([49, 217, 12]).hex()),
        ("Hello World!", bytes([200, 50, 155, 253, 6, 93, 223, 114, 54, 57, 4]).hex()),
        ("[{abc}]~", bytes([27, 222, 6, 21, 22, 143, 55, 169, 141, 111, 211, 3]).hex()),
        ("{åΦΓΛΩΠΨΣΘ€}", bytes([27, 212, 67, 50, 161, 84, 44, 23, 76, 102, 83, 222, 164, 0]).hex()),
        ("a[]{}€", bytes([225, 13, 111, 227, 219, 160, 54, 169, 77, 25]).hex()),
    ],
)
def test_septet_packing(text: str, packed: str) -> None:
    septets = b"".join(gsm7.to_septets(text) or [])
    assert gsm7.pack(septets).hex().upper() == packed.upper()
    assert gsm7.decode(gsm7.unpack(bytes.fromhex(packed), len(septets))) == text


def test_characters_outside_the_alphabet() -> None:
    assert gsm7.to_septets("тест") is None
    assert gsm7.to_septets("`") is None  # not GSM: 0x5F is §
    assert gsm7.decode(b"\x1b") == " "  # a dangling escape
    assert gsm7.decode(b"\x1b\x41") == "A"  # undefined extension: the default character


# --- published SMS-DELIVER PDUs -----------------------------------------------------------

DELIVERS = [
    # (PDU, source, smsc, sender, timestamp, text)
    (
        "07917283010010F5040BC87238880900F10000993092516195800AE8329BFD4697D9EC37",
        "the GSM 03.40 example; GSMMODEM decodes it the same",
        "+27381000015",
        "27838890001",
        datetime(1999, 3, 29, 15, 16, 59, tzinfo=tz(2)),
        "hellohello",
    ),
    (
        "07912104442961F4040B916171957291F800001120821105050A6AC8B2BC7C9A83C220F6DB7D2ECB"
        "41EDF27C1E3E97411BDE06754FD3D1A0F9BB5D0695F1F4B29B5C2683C6E8B03C3CA697E5F34D6AE3"
        "03D1D1F2F7DD0D4ABB59A0797D8C0685E7A00028EC26832A960B28EC2683BE6050780EBA97D96C17",
        f"{MODEMMANAGER} test_pdu1: extension characters, UTC-5",
        "+12404492164",
        "+16175927198",
        datetime(2011, 2, 28, 11, 50, 50, tzinfo=tz(-5)),
        "Here's a longer message [{with some extended characters}] "
        "thrown in, such as £ and ΩΠΨ and §¿ as well.",
    ),
    (
        "07919730071111F10414D04937BD2C7797E9D3E614000811309291024061080442043504410442",
        f"{MODEMMANAGER} test_pdu2: alphanumeric sender, UCS-2",
        "+79037011111",
        "InternetSMS",
        datetime(2011, 3, 29, 19, 20, 4, tzinfo=tz(4)),
        "тест",
    ),
    (
        "07912143658709F1040B818100551512F20000111010214365000AE8329BFD4697D9EC37",
        f"{MODEMMANAGER} test_pdu3_natl: a national number has no plus",
        "+12345678901",
        "18005551212",
        datetime(2011, 1, 1, 12, 34, 56, tzinfo=tz(0)),
        "hellohello",
    ),
    (
        "07913306091093F0040485810000F111604231805180A049B7F90D9A1AA5A01668F8769BD3E4B29B"
        "9E2EB359A03FC85D06A9C3ED707A0EA2CBC3EE79BB4CA7CBCBA05643617DA7C76990FD4D979741EE"
        "77DD5E0ED741ED371D442E83E0E1F9BC0CD281E677D9B84C06C1DF7539E85C9097E520FB9B2E2F83"
        "C6EF369C5E064D8D52D0BC2E07DDEF77D7DC2C7799E5A0771D040FCB41F402BB0047BFDD6550B80E"
        "CAD966",
        f"{MODEMMANAGER} test_pdu_dcsf1: TP-DCS 0xF1 (class 1), 160 septets",
        "+33609001390",
        "1800",
        datetime(2011, 6, 24, 13, 8, 15, tzinfo=tz(2)),
        "Info SFR - Confidentiel, à ne jamais transmettre -\r\n"
        "Voici votre nouveau mot de passe : sw2ced pour gérer "
        "votre compte SFR sur www.sfr.fr ou par téléphone au 963",
    ),
    (
        "06917228195339040B917228214365F700003130805120618005D4F29C2E03",
        f"{GSMMODEM} TestSmsPdu.test_decode",
        "+2782913593",
        "+27821234567",
        datetime(2013, 3, 8, 15, 2, 16, tzinfo=tz(2)),
        "Test2",
    ),
    (
        "07915892000000F0040B915892214365F700007040213252242331493A283D0795C3F33C88FE06C9CB"
        "6132885EC6D341EDF27C1E3E97E7207B3A0C0A5241E377BB1D7693E72E",
        f"{GSMMODEM} TestSmsPdu.test_decode: UTC+8",
        "+85290000000",
        "+85291234567",
        datetime(2007, 4, 12, 23, 25, 42, tzinfo=tz(8)),
        "It is easy to read text messages via AT commands.",
    ),
]


@pytest.mark.parametrize(
    ("pdu", "source", "smsc", "sender", "timestamp", "text"),
    DELIVERS,
    ids=[vector[1] for vector in DELIVERS],
)
def test_published_deliver(
    pdu: str, source: str, smsc: str, sender: str, timestamp: datetime, text: str
) -> None:
    message = decode(pdu)
    assert isinstance(message, Deliver)
    assert (message.smsc, message.sender, message.text) == (smsc, sender, text)
    assert message.timestamp == timestamp
    assert message.timestamp.utcoffset() == timestamp.utcoffset()
    assert message.concat is None


def test_message_class_and_tp_dcs_groups() -> None:
    assert decode(DELIVERS[4][0]).message_class == 1  # 0xF1
    # MODEMMANAGER test_pdu3_8bit (TP-DCS 0x04) and test_pdu_dcsf_8bit (0xF4): the bytes kept
    eight_bit = "07912143658709F1040B918100551512F200{}111010214365000AE8329BFD4697D9EC37DE"
    for dcs, message_class in (("04", None), ("F4", 0)):
        message = decode(eight_bit.format(dcs))
        assert (message.encoding, message.text, message.message_class) == (
            "8bit",
            None,
            message_class,
        )
        assert message.user_data == bytes.fromhex("E8329BFD4697D9EC37DE")
    compressed = DELIVERS[0][0].replace("F10000", "F10020", 1)  # TP-DCS 0x20
    with pytest.raises(PduError, match="compressed"):
        decode(compressed)


@pytest.mark.parametrize(
    ("address", "name"),
    [
        ("0BD0CDE6DB5DCE03", "MMoney"),  # SMSPDUDECODER Address.decode
        ("14D0C4F23C7D760390EF7619", "Design@Home"),  # SMSPDUDECODER: '@' is septet 0
        ("06D061F118", "abc"),  # GSMMODEM TestSmsPduAddressFields
        ("0ED04669D0397C26A7", "FRANCOIS"),  # GSMMODEM
        ("14D0E10D6FE3DBA036A94D19", "a[]{}€"),  # GSMMODEM
        ("0AA11092997856", "0129998765"),  # GSMMODEM: national
        ("0A918967452301", "+9876543210"),  # GSMMODEM: international
    ],
)
def test_published_sender_addresses(address: str, name: str) -> None:
    # The published address fields, in an SMS-DELIVER without SMSC, text or time zone.
    message = decode(f"04{address}00001110102143650000", with_smsc=False)
    assert message.sender == name


def test_published_concatenated_parts() -> None:
    # GSMMODEM: 8-bit reference 0xC3, part 1 of 1; 7-bit text after a UDH and a fill bit
    part = decode(
        "0591721891F1400781721881F800003160526104848059050003C30101916536FB1DCABEEB2074D85E"
        "064941B19CAB060319A5C522289C96D3D3ED32286C0FA7D96131BBEC024941B19CAB0603DDD36C36A8"
        "8C87A7E565D0DB0D82C55EB0DB4B068BCD5C20"
    )
    assert (part.smsc, part.sender, part.concat) == ("+2781191", "2781188", Concat(0xC3, 1, 1))
    assert (
        part.text
        == "Hello!You have R 19.50 FREE airtime available. R 19.50 will expire on 01/07/2013. "
    )
    # MODEMMANAGER test_pdu_udhi: a 16-bit reference (IE 0x08), sender type 0x85
    part = decode(
        "07911356131313F64004850120390011609232239180A006080400100201D7327BFD6EB340E232"
        "1BF46E83EA7790F59D1E97DBE1341B442F83C465763D3DA797E56537C81D0ECB41AB59CC1693C1"
        "6031D96C064241E5656838AF03A96230982A269BCD462917C8FA4E8FCBED709A0D7ABBE9F6B0FB"
        "5C7683D27350984D4FABC9A0B33C4C4FCF5D20EBFB2D079DCB62793DBD06D9C36E50FB2D4E97D9"
        "A0B49B5E96BBCB"
    )
    assert (part.smsc, part.sender, part.concat) == ("+31653131316", "1002", Concat(0x0010, 2, 1))
    assert part.timestamp == datetime(2011, 6, 29, 23, 32, 19, tzinfo=tz(2))
    assert part.text == (
        "Welkom, bel om uw Voicemail te beluisteren naar +31612001233"
        " (PrePay: *100*1233#). Voicemail ontvangen is altijd gratis."
        " Voor gebruik van mobiel interne"
    )


# MODEMMANAGER test_pdu_multipart: two parts (reference 0x4C) from different SMSCs
MULTIPART = (
    "07912160130320F5440B916171056429F5000021405291650569A00500034C0201A9E8F41C949E"
    "83C2207B599E07B1DFEE33885E9ED341E4F23C7D7697C920FA1B54C697E5E3F4BC0C6AD7D9F434"
    "081E96D341E3303C2C4EB3D3F4BC0B94A483E6E8779D4D06CDD1EF3BA80E0785E7A0B7BB0C6A97"
    "E7F3F0B9CC02B9DF7450780EA2DFDF2C50780EA2A3CBA0BA9B5C96B3F369F71954768FDFE4B4FB"
    "0C9297E1F2F2BCECA6CF41",
    "07912160130320F6440B916171056429F5000021405291651569320500034C0202E9E8301D4447"
    "9741F0B09C3E0785E56590BCCC0ED3CB6410FD0D7ABBCBA0B0FB4D4797E52E10",
)


def test_published_multipart_message_reassembled_in_any_order() -> None:
    first, second = (decode(pdu) for pdu in MULTIPART)
    assert first.timestamp == datetime(2012, 4, 25, 19, 56, 50, tzinfo=tz(-4))
    assert second.text == "that the parts are related to one another. "
    reassembler = Reassembler()
    assert reassembler.add(second, now=0.0) is None
    message = reassembler.add(first, now=1.0)
    assert message is not None and message.complete
    assert message.address == "+16175046925"
    assert message.parts == (first, second)
    assert message.text == (
        "This is a very long test designed to exercise multi part capability. It should "
        "show up as one message, not as two, as the underlying encoding represents "
        "that the parts are related to one another. "
    )


# --- published SMS-SUBMIT and SMS-STATUS-REPORT PDUs -------------------------------------


@pytest.mark.parametrize(
    ("pdu", "smsc", "recipient", "text", "validity"),
    [
        # GSMMODEM TestSmsPdu.test_decode
        (
            "07911326040000F0310D0B911326880736F40000A90FF7FBDD454E87CDE1B0DB357EB701",
            "+31624000000",
            "+31628870634",
            "www.diafaan.com",
            timedelta(days=3),
        ),
        (
            "07914346466554F601000B914316565811F9000806304253F68449",
            "+34646456456",
            "+34616585119",
            "あ叶葉",
            None,
        ),
        (
            "0019000B917228001011F100003170013193008017D474BB3CA787DB70903DCC4E93D3F43C885E9ED301",
            None,
            "+27820001111",
            "Timestamp validity test",
            datetime(2013, 7, 10, 13, 39, tzinfo=tz(2)),
        ),
        # MODEMMANAGER test_pdu_stored_by_us: a stored SUBMIT, unknown type of number
        (
            "002100098136397339F70008224F60597D4F60597D4F60597D4F60597D4F60597D4F60597D4F60597D"
            "4F60597D4F60",
            None,
            "639337937",
            "你好你好你好你好你好你好你好你好你",
            None,
        ),
    ],
)
def test_published_submit(
    pdu: str, smsc: str | None, recipient: str, text: str, validity: object
) -> None:
    message = decode(pdu)
    assert isinstance(message, Submit)
    assert (message.smsc, message.recipient, message.text, message.validity) == (
        smsc,
        recipient,
        text,
        validity,
    )


def test_published_8bit_submit() -> None:
    # GSMMODEM: TP-DCS 0x04; the bytes are kept, as bytes
    message = decode("0591721891F101000B917228214365F700040C48656C6C6F20776F726C6421")
    assert (message.recipient, message.encoding, message.text) == ("+27821234567", "8bit", None)
    assert message.user_data == b"Hello world!"


@pytest.mark.parametrize(
    ("pdu", "smsc", "reference", "recipient", "timestamp", "discharge_time"),
    [
        # GSMMODEM TestSmsPdu.test_decode
        (
            "0006D60B911326880736F4111011719551401110117195714000",
            None,
            214,
            "+31628870634",
            ...,
            ...,
        ),
        # MODEMMANAGER test_pdu_not_stored
        (
            "07914356060013F1065A098136397339F7219011700463802190117004638030",
            "+34656000311",
            0x5A,
            "639337937",
            datetime(2012, 9, 11, 7, 40, 36, tzinfo=tz(2)),
            ...,
        ),
        # GSMMODEM: "semi-invalid status report PDU captured from a ZTE modem" (its
        # recipient is garbage, its times are not)
        (
            "0297F1061C0F910B487228297020F5317062419272803170624192138000",
            ...,
            28,
            ...,
            datetime(2013, 7, 26, 14, 29, 27, tzinfo=tz(2)),
            datetime(2013, 7, 26, 14, 29, 31, tzinfo=tz(2)),
        ),
    ],
)
def test_published_status_report(
    pdu: str,
    smsc: object,
    reference: int,
    recipient: object,
    timestamp: object,
    discharge_time: object,
) -> None:
    report = decode(pdu)
    assert isinstance(report, StatusReport)
    got = (report.smsc, report.reference, report.recipient, report.timestamp, report.discharge_time)
    expected = (smsc, reference, recipient, timestamp, discharge_time)
    assert all(e is ... or g == e for g, e in zip(got, expected, strict=True)), got


@pytest.mark.parametrize(
    ("status", "delivered", "final", "reason"),
    [
        (0x00, True, True, None),
        (0x01, True, True, None),  # forwarded, delivery not confirmed
        (0x21, False, False, "recipient busy"),
        (0x30, False, False, "status 0x30"),  # service-centre specific, still trying
        (0x41, False, True, "incompatible destination"),
        (0x46, False, True, "validity period expired"),
        (0x62, False, True, "no response from the recipient"),  # temporary, given up
        (0x80, False, True, "status 0x80"),  # reserved
    ],
)
def test_status_report_status(status: int, delivered: bool, final: bool, reason: str) -> None:
    # The GSMMODEM status report above, with its TP-ST octet replaced
    report = decode(f"0006D60B911326880736F41110117195514011101171957140{status:02X}")
    assert (report.status, report.delivered, report.final, report.reason) == (
        status,
        delivered,
        final,
        reason,
    )


# --- encoding against published SMS-SUBMIT PDUs -------------------------------------------

LOREM = (
    "Lorem ipsum dolor sit amet, consectetur adipisicing elit, sed do eiusmod tempor incididunt"
    " ut labore et dolore magna aliqua.Ut enim ad minim veniam, quinostrud exercitation ullamco"
    " laboris nisi ut aliquip ex ea commodo consequat.Duis aute irure dolor in reprehenderit in"
    " voluptate velit esse cillum doloe eu fugiat nulla pariatur.Excepteur sint occaecat"
    " cupidatat non proident, sunt in culpa qui officia deserunt mollit anim id est laborum"
)
RUSSIAN = "Да здравствует король, детка!"
HI_THERE = "Hi there...Tue 17th Jan 2012 05:30.18 pm (GMT+1) ΔΔΔΔΔ"


@pytest.mark.parametrize(
    ("to", "text", "options", "expected"),
    [
        # GSMMODEM TestSmsPdu.test_encodeSmsSubmit
        ("+27820001111", "Hello World!", {}, "0001000B917228001011F100000CC8329BFD065DDF72363904"),
        (
            "+123456789",
            "世界您好！",
            {"validity_minutes": 52 * 7 * 24 * 60, "smsc": "+44000000000"},
            "07914400000000F01100099121436587F90008F40A4E16754C60A8597DFF01",
        ),
        # MODEMMANAGER test_create_pdu_*: UCS-2 and GSM 7-bit, 5 minutes' validity
        (
            "+15555551234",
            RUSSIAN,
            {"validity_minutes": 5, "smsc": "+19037029920"},
            "07919130079229F011000B915155551532F40008003A041404300020043704340440043004320441"
            "044204320443043504420020043A043E0440043E043B044C002C0020043404350442043A04300021",
        ),
        (
            "+15555551234",
            RUSSIAN,
            {"validity_minutes": 5},
            "0011000B915155551532F40008003A04140430002004370434044004300432044104420432044304"
            "3504420020043A043E0440043E043B044C002C0020043404350442043A04300021",
        ),
        (
            "+15555551234",
            HI_THERE,
            {"validity_minutes": 5, "smsc": "+19037029920"},
            "07919130079229F011000B915155551532F400000036C834888E2ECBCB2E978B5A2F8362373A1AA4"
            "0CBB4132584C0682D57433982B8603C1DB20D4B1495DC552200804028100",
        ),
        (
            "+15556661234",
            "This is really cool ΔΔΔΔΔ",
            {"validity_minutes": 5},
            "0011000B915155661632F40000001954747A0E4ACF41F27298CDCE83C6EF371B0481402010",
        ),
        (
            "+15556661234",
            "This is really cool ΔΔΔΔΔ",
            {},
            "0001000B915155661632F400001954747A0E4ACF41F27298CDCE83C6EF371B0481402010",
        ),
    ],
)
def test_encode_matches_published_submit(to: str, text: str, options: dict, expected: str) -> None:
    [part] = encode_submit(to, text, reference=0, **options)
    assert part.hex == expected
    smsc_octets = int(expected[:2], 16) + 1
    assert part.tpdu_length == len(expected) // 2 - smsc_octets
    assert (part.part, part.parts) == (1, 1)


def test_encode_matches_published_concatenated_submit() -> None:
    # GSMMODEM test_encodeSmsSubmit_concatenated, made with TP-RD (first octet 0x45), which
    # we never set (0x41): 153 septets a part after the 6-octet header and one fill bit.
    published = [
        "0045000B915121551532F40000A0050003000301986F79B90D4AC3E7F53688FC66BFE5A0799A0E0AB7CB"
        "741668FC76CFCB637A995E9783C2E4343C3D4F8FD3EE33A8CC4ED359A079990C22BF41E5747DDE7E93"
        "41F4721BFE9683D2EE719A9C26D7DD74509D0E6287C56F791954A683C86FF65B5E06B5C36777181466"
        "A7E3F5B0AB4A0795DDE936284C06B5D3EE741B642FBBD3E1360B14AFA7DD",
        "0045000B915121551532F40000A0050003000302DE73BABC4E0695F165F9384D0FD3D36F37A8CE6687"
        "DBE337881D16BFE5E939C89D9EA741753A28CC4EC7EB6938A88C0795C3A0F1BBDD7E93DFA0F1DB3D2F"
        "C7EB61BA8B584FCF41E13ABD0C4ACBEBF23288FC66BFE5A0B41B242FC3E56574D94D2ECBD37450DA0D"
        "B2BFD975383D4C2F83EC65769A0E2ACFE765D038CD66D7DB20F29BFD2E83CA",
        "0045000B915121551532F400008C050003000303EA2073FD9C0ED341EE3A9B1D06C1C3F274985E97BB"
        "8AF871194E2FD7E5A079DA4D07BDC7E370791CA683C675789A1CA687E920F7DB0D82CBDF6972D94D67"
        "81E675371D947683C675363C0C8AD7D3A0B7D99C1EA7C32072795E96D7DD7450FBCD66A7E9A0B03BDD"
        "06A5C9A0F29C0E6287C56F79BD0D",
    ]
    parts = encode_submit("+15125551234", LOREM, reference=0)
    assert [part.hex for part in parts] == ["0041" + pdu[4:] for pdu in published]
    assert [(part.part, part.parts) for part in parts] == [(1, 3), (2, 3), (3, 3)]


def test_encode_flags() -> None:
    [part] = encode_submit("+79161234567", "hi", reference=300, status_report=True)
    assert part.hex.startswith("0021000B91")  # SMS-SUBMIT + TP-SRR, TP-MR 0
    message = decode(part.hex)
    assert (message.status_report, message.reference, message.validity) == (True, 0, None)
    first, _ = encode_submit("0791234567", "x" * 161, reference=300)
    message = decode(first.hex)
    assert first.hex.startswith("0041000A81")  # TP-UDHI, national number
    assert message.concat == Concat(300 % 256, 2, 1)


@pytest.mark.parametrize(
    ("minutes", "validity"),
    [
        (1, timedelta(minutes=5)),  # rounded up to what TP-VP can say
        (30, timedelta(minutes=30)),
        (16 * 60, timedelta(hours=16)),
        (3 * 24 * 60, timedelta(days=3)),
        (5 * 7 * 24 * 60, timedelta(weeks=5)),
        (63 * 7 * 24 * 60, timedelta(weeks=63)),
    ],
)
def test_relative_validity(minutes: int, validity: timedelta) -> None:
    [part] = encode_submit("+79161234567", "hi", reference=0, validity_minutes=minutes)
    assert decode(part.hex).validity == validity


@pytest.mark.parametrize(
    ("to", "options"),
    [
        ("+7 916 123-45-67", {}),
        ("+79161234567\r\nAT+CMGD=1,4", {}),
        ("79161234567;", {}),
        ("", {}),
        ("+", {}),
        ("+0123", {}),
        ("+1234567890123456", {}),  # 16 digits: not E.164
        ("١٢٣", {}),  # digits, but not ASCII ones
        ("MegaFon", {}),
        ("+79161234567", {"smsc": "+7 916"}),
        ("+79161234567", {"validity_minutes": 0}),
        ("+79161234567", {"validity_minutes": 63 * 7 * 24 * 60 + 1}),
    ],
)
def test_encode_refuses(to: str, options: dict) -> None:
    with pytest.raises(PduError):
        encode_submit(to, "hi", reference=0, **options)


def test_encode_refuses_lone_surrogates_and_too_many_parts() -> None:
    with pytest.raises(PduError, match="Unicode"):
        encode_submit("+79161234567", "a\ud83d", reference=0)
    assert sms_parts_needed("x" * 153 * 256) == ("gsm7", 256)
    with pytest.raises(PduError, match="256 parts"):
        encode_submit("+79161234567", "x" * 153 * 256, reference=0)


# --- part boundaries ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "encoding", "parts"),
    [
        ("", "gsm7", 1),
        ("a" * 160, "gsm7", 1),
        ("a" * 161, "gsm7", 2),
        ("€" * 80, "gsm7", 1),  # 160 septets
        ("€" * 80 + "a", "gsm7", 2),
        ("a" * 306, "gsm7", 2),
        ("a" * 307, "gsm7", 3),
        ("a" * 152 + "€" + "a" * 152, "gsm7", 3),  # the escape sequence moves to part 2
        ("a" * 151 + "€" + "a" * 153, "gsm7", 2),
        ("ж" * 70, "ucs2", 1),
        ("ж" * 71, "ucs2", 2),
        ("ж" * 134, "ucs2", 2),
        ("ж" * 135, "ucs2", 3),
        ("😀" * 35, "ucs2", 1),  # 70 code units
        ("ж" * 66 + "😀" + "ж" * 66, "ucs2", 3),  # the surrogate pair moves to part 2
        ("ж" * 65 + "😀" + "ж" * 67, "ucs2", 2),
        ("a" * 159 + "ж", "ucs2", 3),
    ],
)
def test_part_counts(text: str, encoding: str, parts: int) -> None:
    assert sms_parts_needed(text) == (encoding, parts)
    encoded = encode_submit("+79161234567", text, reference=1)
    assert len(encoded) == parts
    assert "".join(decode(part.hex).text for part in encoded) == text


def test_escape_and_surrogate_pair_stay_whole_at_the_boundary() -> None:
    first, _, _ = encode_submit("+79161234567", "a" * 152 + "€" + "a" * 152, reference=1)
    assert decode(first.hex).text == "a" * 152
    first, _, _ = encode_submit("+79161234567", "ж" * 66 + "😀" + "ж" * 66, reference=1)
    assert decode(first.hex).text == "ж" * 66


# --- round trips --------------------------------------------------------------------------

GSM_CHARS = [char for char in gsm7.DEFAULT if char != "\x1b"]
SCRIPTS = st.one_of(
    st.sampled_from(GSM_CHARS + list(gsm7.EXTENSION.values())),
    st.characters(min_codepoint=0x0400, max_codepoint=0x04FF),  # Cyrillic
    st.characters(min_codepoint=0x10D0, max_codepoint=0x10FF),  # Georgian
    st.characters(min_codepoint=0x1780, max_codepoint=0x17FF),  # Khmer
    st.characters(min_codepoint=0x1F300, max_codepoint=0x1FAFF),  # emoji: surrogate pairs
)
ALPHABETS = [
    st.sampled_from(GSM_CHARS),
    st.sampled_from(GSM_CHARS + list(gsm7.EXTENSION.values())),
    SCRIPTS,
    st.characters(exclude_categories=("Cs",)),
]
# Lengths drawn evenly up to 1000, so that long texts of many parts are common.
TEXTS = st.tuples(st.sampled_from(ALPHABETS), st.integers(0, 1000)).flatmap(
    lambda drawn: st.text(drawn[0], min_size=drawn[1], max_size=drawn[1])
)


def first_unit(message: Submit) -> int:
    """The size of the first character of a part, as it counts against the limit."""
    if message.encoding == "gsm7":
        return 2 if message.user_data[:1] == b"\x1b" else 1
    return 4 if 0xD8 <= message.user_data[0] <= 0xDB else 2


@settings(max_examples=200)
@given(text=TEXTS, reference=st.integers(0, 1000), data=st.data())
def test_round_trip(text: str, reference: int, data: st.DataObject) -> None:
    to = "+995322123456"
    parts = encode_submit(to, text, reference=reference, status_report=True)
    encoding, count = sms_parts_needed(text)
    assert len(parts) == count
    messages = [decode(part.hex) for part in parts]
    for number, (part, message) in enumerate(zip(parts, messages, strict=True), 1):
        assert isinstance(message, Submit)
        assert (message.recipient, message.encoding, message.status_report) == (to, encoding, True)
        assert (part.part, part.parts, part.tpdu_length) == (number, count, len(part.hex) // 2 - 1)
        expected_concat = Concat(reference % 256, count, number) if count > 1 else None
        assert message.concat == expected_concat
        single, each = (160, 153) if encoding == "gsm7" else (140, 134)
        assert len(message.user_data) <= (single if count == 1 else each)  # septets, octets
    # Each part decodes whole on its own: no escape sequence or surrogate pair is split.
    assert "".join(message.text for message in messages) == text
    # Every part but the last is as full as it can be, so the count is the least possible.
    for this, following in pairwise(messages):
        assert len(this.user_data) + first_unit(following) > each
    reassembler = Reassembler()
    order = data.draw(st.permutations(messages))
    results = [reassembler.add(message, now=1.0) for message in order]
    assert results[:-1] == [None] * (count - 1)
    assert results[-1] is not None and results[-1].complete
    assert (results[-1].address, results[-1].text) == (to, text)


# --- reassembly ---------------------------------------------------------------------------


def part(seq: int, total: int, text: str, sender: str = "+79161234567", ref: int = 7) -> Deliver:
    payload = text.encode("utf-16-be", "surrogatepass")
    return Deliver(
        smsc=None,
        sender=sender,
        timestamp=None,
        encoding="ucs2",
        text=payload.decode("utf-16-be", "replace"),
        user_data=payload,
        message_class=None,
        concat=Concat(ref, total, seq),
    )


def test_duplicates_are_ignored_before_and_after_completion() -> None:
    reassembler = Reassembler()
    one, two = part(1, 2, "При"), part(2, 2, "вет")
    assert reassembler.add(one, now=0) is None
    assert reassembler.add(one, now=1) is None
    assert reassembler.add(two, now=2).text == "Привет"
    assert reassembler.add(two, now=3) is None  # read again, after +CMTI say
    assert reassembler.expire(now=4, max_age=10) == []
    # Once the memory of it has expired, the same reference is a new message.
    assert reassembler.expire(now=100, max_age=10) == []
    assert reassembler.add(two, now=101) is None
    assert reassembler.add(one, now=102).text == "Привет"


def test_senders_and_references_are_kept_apart() -> None:
    reassembler = Reassembler()
    assert reassembler.add(part(1, 2, "a", sender="+1"), now=0) is None
    assert reassembler.add(part(2, 2, "b", sender="+2"), now=0) is None
    assert reassembler.add(part(2, 2, "c", sender="+1", ref=8), now=0) is None
    assert reassembler.add(part(2, 3, "d", sender="+1"), now=0) is None
    assert reassembler.add(part(2, 2, "e", sender="+1"), now=0).text == "ae"


def test_expire_returns_what_it_has() -> None:
    reassembler = Reassembler()
    reassembler.add(part(3, 3, "c"), now=0)
    reassembler.add(part(1, 3, "a"), now=5)
    assert reassembler.expire(now=14, max_age=10) == []  # a part came 9 s ago
    [message] = reassembler.expire(now=15, max_age=10)
    assert (message.complete, message.missing, message.text) == (False, (2,), "ac")
    assert reassembler.expire(now=100, max_age=10) == []


def test_a_surrogate_pair_split_by_the_sender_is_joined() -> None:
    reassembler = Reassembler()
    one, two = part(1, 2, "ok \ud83d"), part(2, 2, "\ude00!")
    assert one.text == "ok \ufffd"  # alone, half a pair means nothing
    reassembler.add(one, now=0)
    assert reassembler.add(two, now=0).text == "ok 😀!"


def test_single_messages_pass_straight_through() -> None:
    message = decode(DELIVERS[2][0])
    result = Reassembler().add(message, now=0)
    assert (result.address, result.text, result.parts, result.complete) == (
        "InternetSMS",
        "тест",
        (message,),
        True,
    )


# --- malformed input ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pdu", "match"),
    [
        ("", "truncated"),
        ("0", "hex digits"),
        ("0G", "hex digits"),
        ("00 01", "hex digits"),
        (DELIVERS[0][0] + "0", "hex digits"),
        (DELIVERS[0][0] + "00", "after the user data"),
        (DELIVERS[0][0][:-2], "truncated"),
        # MODEMMANAGER test_pdu_insufficient_data: TP-UDL 11, 10 septets of data
        ("07912143658709F1040B918100551512F20000111010214365000BE8329BFD4697D9EC37", "truncated"),
        # GSMMODEM: "User data length is invalid in this PDU (too long)": it decodes it anyway
        ("0041010C910661345542F60008A0050003000301306F3044", "user data length 160"),
        ("0003", "reserved message type"),
        ("0C", "SMSC address of 12 octets"),
        ("0004FF91", "at most 20"),
        ("00040391F1F3", "filler"),
        # the UDH claims 7 octets of a 6-octet user data
        ("0040038121F300001110102143650006070003000102", "header is longer"),
        # an information element running past the end of its header
        ("0040038121F300001110102143650006030005000102", "overruns"),
    ],
)
def test_malformed(pdu: str, match: str) -> None:
    with pytest.raises(PduError, match=match):
        decode(pdu)


def test_invalid_timestamps_do_not_lose_the_message() -> None:
    message = decode("04039121F30000000000000000000AE8329BFD4697D9EC37", with_smsc=False)
    assert (message.timestamp, message.text) == (None, "hellohello")


VECTORS = [vector[0] for vector in DELIVERS] + [*MULTIPART]


@settings(max_examples=500)
@given(data=st.binary(max_size=200), with_smsc=st.booleans())
def test_fuzz_bytes(data: bytes, with_smsc: bool) -> None:
    try:
        decode(data.hex(), with_smsc=with_smsc)
    except PduError:
        pass


@settings(max_examples=500)
@given(
    pdu=st.sampled_from(VECTORS),
    edits=st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=4),
    cut=st.integers(0, 200),
)
def test_fuzz_mutated_pdus(pdu: str, edits: list[tuple[int, int]], cut: int) -> None:
    data = bytearray.fromhex(pdu)
    for index, value in edits:
        data[index % len(data)] = value
    try:
        decode(data[: len(data) - cut % 8].hex())
    except PduError:
        pass


@given(st.text(max_size=50))
def test_fuzz_text(text: str) -> None:
    try:
        decode(text)
    except PduError:
        pass


# --- the baseline codec: python-gsmmodem-new ------------------------------------------------


@pytest.fixture(scope="module")
def baseline() -> ModuleType:
    return pytest.importorskip(
        "gsmmodem.pdu", reason="python-gsmmodem-new (the baseline codec) is not installed"
    )


def baseline_can(text: str) -> bool:
    """Its GSM 7-bit table has '`' where 0x5F is '§', 'ÿ' (which it cannot encode) for the
    form feed, and the escape itself as a character."""
    return not set(text) & {"§", "`", "\f", "ÿ", "\x1b"}


BASELINE_TEXTS = st.text(
    st.sampled_from(GSM_CHARS + list(gsm7.EXTENSION.values()))
    | st.characters(max_codepoint=0xFFFF, exclude_categories=("Cs",)),  # its encoder: BMP only
    max_size=600,
).filter(baseline_can)


def whole(text: str) -> str:
    """The baseline decodes a surrogate pair as two lone halves."""
    return text.encode("utf-16-be", "surrogatepass").decode("utf-16-be")


@settings(max_examples=100)
@given(text=BASELINE_TEXTS | st.text(SCRIPTS, max_size=600).filter(baseline_can))
def test_baseline_decodes_ours(baseline: ModuleType, text: str) -> None:
    parts = encode_submit("+79161234567", text, reference=42)
    decoded = [baseline.decodeSmsPdu(part.hex) for part in parts]
    assert {result["number"] for result in decoded} == {"+79161234567"}
    assert whole("".join(result["text"] for result in decoded)) == text
    assert [result["tpdu_length"] for result in decoded] == [part.tpdu_length for part in parts]


@settings(max_examples=100)
@given(text=BASELINE_TEXTS, reference=st.integers(0, 255))
def test_we_decode_the_baselines(baseline: ModuleType, text: str, reference: int) -> None:
    pdus = baseline.encodeSmsSubmitPdu(
        "+79161234567", text, reference=reference, requestStatusReport=False
    )
    reassembler = Reassembler()
    results = [reassembler.add(decode(str(pdu)), now=0) for pdu in pdus]
    assert results[-1].text == text
    assert {message.reference for message in results[-1].parts} == {reference}


def test_baseline_agrees_on_published_delivers(baseline: ModuleType) -> None:
    # Not on test_pdu1 (its 0x5F is '`') nor on a 16-bit reference (it loses a character).
    for pdu in (DELIVERS[0][0], DELIVERS[2][0], DELIVERS[5][0], DELIVERS[6][0]):
        theirs, ours = baseline.decodeSmsPdu(pdu), decode(pdu)
        assert (theirs["number"], theirs["text"], theirs["time"]) == (
            ours.sender,
            ours.text,
            ours.timestamp,
        )


@given(text=st.text(max_size=400))
def test_deliver_pdus_decode_to_the_text_and_sender(text: str) -> None:
    when = datetime(2026, 11, 23, 9, 30, 15, tzinfo=UTC)
    try:
        pdus = encode_deliver("+79161234567", text, reference=77, timestamp=when)
    except PduError:
        return  # lone surrogates: not text a phone can send
    reassembler = Reassembler()
    results = [reassembler.add(decode(pdu), 0.0) for pdu in reversed(pdus)]
    complete = results[-1]
    assert complete is not None and complete.text == text
    assert complete.address == "+79161234567"
    assert all(decode(pdu).timestamp == when for pdu in pdus)
