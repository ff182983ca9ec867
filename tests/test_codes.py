"""The issuers' parsers: reference vectors, and properties over generated codes."""

import json
import subprocess
import sys
from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.codes import CodePolicy, parse, split_input
from gateway.codes.hibc import check_character as hibc_check
from gateway.codes.ma import check_character as ma_check
from gateway.config import gtin_check_digit

GS = "\x1d"
TODAY = date(2026, 11, 23)
UDI = CodePolicy(required_ais=("01", "17", "10", "21"))
GOOD = f"0106901234567892112611231728112310A2611{GS}21SER0001"


def errors(data, policy=UDI, identifier="]d2"):
    return sorted(f.code for f in parse(data, identifier, policy, TODAY).errors)


def warnings(data, policy=UDI, identifier="]d2"):
    return sorted(f.code for f in parse(data, identifier, policy, TODAY).warnings)


@pytest.mark.parametrize(
    "data, expected",
    [
        (GOOD, []),
        (GOOD.replace("06901234567892", "06901234567893"), ["gs1_check_digit"]),
        (GOOD.replace("A2611", "A26é1"), ["gs1_invalid_character"]),
        (GOOD.replace("A2611", "A2611" + "X" * 16), ["gs1_missing_separator"]),  # 21 characters
        (GOOD.replace(f"A2611{GS}21", "A261121"), ["gs1_missing_separator"]),  # fits, but (21) is required
        (GOOD + f"{GS}2499X", ["gs1_unknown_ai"]),
        (GOOD.replace("21SER0001", "21SER0001" + GS + "21SER0002"), ["gs1_repeated_ai"]),
        (f"0206901234567892{GS}10A", ["gs1_ai_requires", "gs1_missing_ai", "gs1_missing_ai", "gs1_missing_ai"]),
        (GOOD + f"{GS}25512345678901280", ["gs1_ai_excludes"]),
        (GOOD.replace("17281123", "17280230"), ["date_invalid"]),
        # a fixed-length field cut short takes the next field's digits: what follows is no AI
        (GOOD.replace("17281123", "1728112"), ["gs1_unknown_ai"]),
        (GOOD + f"{GS}1728", ["gs1_syntax"]),  # too short at the end
        (GOOD.replace(f"{GS}21SER0001", ""), ["gs1_missing_ai"]),
    ],
)
def test_gs1_element_strings(data, expected):
    assert errors(data) == expected


def test_gs1_fields_and_pi():
    code = parse(GOOD, "]d2", UDI, TODAY)
    assert code.valid and code.issuer == "GS1" and code.di == "06901234567892"
    assert (code.lot, code.serial, code.production, code.expiry) == (
        "A2611",
        "SER0001",
        date(2026, 11, 23),
        date(2028, 11, 23),
    )


@pytest.mark.parametrize("policy, as_error, as_warning", [("accept", [], []), ("warn", [], ["gs1_day_zero"])])
def test_day_zero_policy(policy, as_error, as_warning):
    data = GOOD.replace("17281123", "17281100")
    rules = CodePolicy(day_zero=policy, required_ais=UDI.required_ais)
    assert errors(data, rules) == as_error and warnings(data, rules) == as_warning
    assert parse(data, "]d2", rules, TODAY).expiry == date(2028, 11, 30)  # day 00 = end of month
    assert errors(data, CodePolicy(day_zero="reject")) == ["gs1_day_zero"]


def test_a_dropped_separator_that_fits_is_reported_even_when_not_required():
    data = GOOD.replace(f"A2611{GS}21", "A261121")
    code = parse(data, "]d2", CodePolicy(), TODAY)
    assert code.errors == () and [f.code for f in code.warnings] == ["gs1_missing_separator"]
    assert "(21) 'SER0001'" in code.warnings[0].message


def test_issuer_detection_and_other_forms():
    assert parse(GOOD, "]d1").errors[0].code == "not_gs1"  # GS1 data without FNC1 first
    link = parse("https://id.gs1.org/01/06901234567892/10/A1/21/S1?17=281123", today=TODAY)
    assert link.issuer == "GS1 Digital Link" and link.valid
    assert (link.di, link.lot, link.serial, link.expiry) == ("06901234567892", "A1", "S1", date(2028, 11, 23))
    hri = parse("(01)06901234567892(17)281123(10)A1(21)S1", today=TODAY)
    assert hri.valid and hri.fields == {"01": "06901234567892", "17": "281123", "10": "A1", "21": "S1"}
    assert parse("plain text").errors[0].code == "unknown_issuer"
    assert split_input("]d201069<GS>10A\\x1d21B") == ("]d2", f"01069{GS}10A{GS}21B")


MA_SAMPLE = "MA.156.M0.100350.01004YA10017.SLMSAGAAAC.M210628.LAY21062803.E220628.V220627.C3"


def test_ma_reference_samples():
    code = parse(MA_SAMPLE, today=TODAY)
    assert code.issuer == "MA" and code.valid and code.warnings == ()
    assert code.di == "MA.156.M0.100350.01004YA10017"
    assert (code.lot, code.serial, code.production, code.expiry) == (
        "AY21062803",
        "LMSAGAAAC",
        date(2021, 6, 28),
        date(2022, 6, 28),
    )
    for di in ("MA.156.M0.100204.13351764", "MA.156.M0.100350.01004YA10017"):
        assert ma_check(di[:-1]) == di[-1]
    assert [f.code for f in parse(MA_SAMPLE.replace(".C3", ".C4")).warnings] == ["ma_check_character"]
    assert [f.code for f in parse(MA_SAMPLE.replace(".C3", ".C4"), policy=CodePolicy(ma_check="reject")).errors] == [
        "ma_check_character"
    ]
    assert [f.code for f in parse(MA_SAMPLE.replace("M210628", "M211328")).errors] == ["date_invalid"]
    assert [f.code for f in parse("MA.156.X.1.2").errors] == ["ma_syntax"]
    assert [f.code for f in parse(MA_SAMPLE.replace(".E220628", ".Q1")).errors] == ["ma_syntax"]


@pytest.mark.parametrize(
    "text, check",
    [("+E20831269/$$8020423286539", "+"), ("+A99912345/$$52001510X3/16D20111212/S77DE1G45", "-")],
)
def test_hibc_reference_vectors(text, check):
    assert hibc_check(text) == check
    code = parse(text + check, today=TODAY)
    assert code.issuer == "HIBC" and code.valid
    changed = text[:3] + ("7" if text[3] != "7" else "8") + text[4:] + check
    assert [f.code for f in parse(changed).errors] == ["hibc_check_character"]


def test_hibc_fields():
    code = parse("+A99912345/$$52001510X3/16D20111212/S77DE1G45-", today=TODAY)
    assert code.di == "+A99912345"
    assert (code.lot, code.serial, code.production, code.expiry) == (
        "10X3",
        "77DE1G45",
        date(2011, 12, 12),
        date(2020, 1, 15),
    )


def test_isbt_and_ahm():
    assert parse("=/A0000X").issuer == "ISBT 128"
    policy = CodePolicy(ahm_pattern=r"(?P<di>\d{14})BN(?P<lot>[A-Z0-9]+)ED(?P<expiry>\d{6})")
    code = parse("12345678901234BNL77ED281130", policy=policy)
    assert code.issuer == "AHM" and (code.di, code.lot, code.expiry) == ("12345678901234", "L77", date(2028, 11, 30))
    assert [f.code for f in parse("12345678901234XX", "]Q1", policy).errors] == ["ahm_syntax"]


# -- properties ----------------------------------------------------------------------------------

CSET82 = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!\"%&'()*+,-./:;<=>?_",
    min_size=1,
    max_size=20,
)
DATES = st.dates(min_value=date(2027, 1, 1), max_value=date(2060, 12, 31))


@st.composite
def udis(draw):
    body = "69" + draw(st.text(alphabet="0123456789", min_size=10, max_size=10))
    gtin = "0" + body + str(gtin_check_digit("0" + body))
    fixed = [("01", gtin), ("17", draw(DATES).strftime("%y%m%d")), ("11", draw(DATES).strftime("%y%m%d"))]
    variable = [("10", draw(CSET82)), ("21", draw(CSET82))]
    fixed = draw(st.permutations(fixed))
    variable = draw(st.permutations(variable))
    return "".join(a + v for a, v in fixed) + GS.join(a + v for a, v in variable), dict(fixed + variable)


@settings(max_examples=300, deadline=None)
@given(udis())
def test_generated_valid_codes_pass(code):
    data, fields = code
    parsed = parse(data, "]d2", UDI, TODAY)
    assert parsed.errors == () and parsed.fields == fields


@settings(max_examples=300, deadline=None)
@given(udis(), st.integers(0, 13), st.characters(codec="ascii", exclude_characters=GS))
def test_any_substitution_in_the_gtin_is_caught(code, position, replacement):
    data, fields = code
    start = data.index("01" + fields["01"]) + 2
    if data[start + position] == replacement:
        return
    changed = data[: start + position] + replacement + data[start + position + 1 :]
    assert not parse(changed, "]d2", UDI, TODAY).valid


@settings(max_examples=300, deadline=None)
@given(udis())
def test_a_dropped_separator_is_never_silently_merged(code):
    data, fields = code
    merged = data.replace(GS, "")
    for policy in (UDI, CodePolicy()):
        parsed = parse(merged, "]d2", policy, TODAY)
        reported = [f for f in parsed.errors + parsed.warnings if f.code == "gs1_missing_separator"]
        assert reported, (merged, parsed)
        if policy is UDI:
            assert not parsed.valid


def test_check_code_command(tmp_path):
    job = tmp_path / "job.toml"
    job.write_text('[job]\ngtin = "06901234567892"\nlot = "B1"\n')
    run = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "check-code", "--json", "--job", str(job), "]d2" + GOOD, MA_SAMPLE],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 1  # the lot is not the order's
    first, second = (json.loads(line) for line in run.stdout.splitlines())
    assert first["input"] == "]d2" + GOOD and first["issuer"] == "GS1" and first["valid"] is False
    assert [e["code"] for e in first["errors"]] == ["wrong_lot"]
    assert first["fields"]["21"] == "SER0001" and first["warnings"] == []
    assert second["issuer"] == "MA" and second["fields"]["L"] == "AY21062803"
    bad = tmp_path / "bad.toml"
    bad.write_text('[job]\ngtin = "123"\n')
    refused = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "check-code", "--job", str(bad), GOOD], capture_output=True, text=True
    )
    assert refused.returncode == 2 and "job.gtin = '123': expected a GTIN-14" in refused.stderr


def test_hibc_secondary_in_its_own_symbol():
    body = "+$$3281130LOT77" + "5"  # data, then the primary symbol's check character as the link
    code = parse(body + hibc_check(body), today=TODAY)
    assert code.valid and code.di is None and code.fields["link"] == "5"
    assert (code.lot, code.expiry) == ("LOT77", date(2028, 11, 30))
    assert [f.code for f in parse(body + "Z").errors] == ["hibc_check_character"]
