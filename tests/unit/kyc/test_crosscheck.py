"""MRZ vs visual zone: a single wrong MRZ character is never accepted with wrong fields.

The documents are generated: MRZ lines from field values (kyc.mrz.build_mrz) and the printed
visual zone as the text lines an OCR returns for an ICAO layout (labels, then values). Any one
character of the MRZ is replaced by any other MRZ character, including the swaps no check digit
can see (0/A/K/U, 1/B/L/V, ...) and changes to names, issuer, nationality, sex and document code,
which no check digit covers.
"""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kyc.config import KycConfig
from kyc.crosscheck import LABEL_WORDS, cross_check, visual_dates
from kyc.document import DocumentRead, validate
from kyc.mrz import CHARSET, DIGITS, LETTERS, Mrz, build_mrz, parse

TODAY = date(2024, 6, 1)
CONFIG = KycConfig()
FIELDS = (
    "document_code",
    "issuer",
    "document_number",
    "nationality",
    "birth_date",
    "sex",
    "expiry_date",
    "surname",
    "given_names",
    "optional_data",
)
FRENCH = {1: "JANV", 2: "FEVR", 3: "MARS", 4: "AVR", 5: "MAI", 6: "JUIN", 7: "JUIL", 8: "AOUT",
          9: "SEPT", 10: "OCT", 11: "NOV", 12: "DEC"}  # fmt: skip

word = st.text(alphabet=LETTERS, min_size=1, max_size=10).filter(lambda w: w not in LABEL_WORDS)
OPTIONAL_LENGTH = {"TD1": 15, "TD2": 7, "TD3": 14}  # characters of the MRZ's optional data field


def alnum(max_size: int) -> st.SearchStrategy[str]:
    return st.text(alphabet=LETTERS + DIGITS, min_size=1, max_size=max_size).filter(
        lambda w: w not in LABEL_WORDS
    )


@st.composite
def documents(draw: st.DrawFn) -> tuple[list[str], list[str]]:
    """(MRZ lines, visual-zone text lines) of one consistent generated document."""
    fmt = draw(st.sampled_from(["TD1", "TD2", "TD3"]))
    code = "P" if fmt == "TD3" else draw(st.sampled_from(["I", "ID", "AC", "C"]))
    surname = draw(st.lists(word, min_size=1, max_size=2))
    given_names = draw(st.lists(word, max_size=3))
    birth = draw(st.dates(min_value=date(1930, 1, 1), max_value=date(2005, 12, 31)))
    expiry = draw(st.dates(min_value=date(2024, 6, 2), max_value=date(2060, 12, 31)))
    sex = draw(st.sampled_from(["M", "F", "<"]))
    optional = draw(st.one_of(st.just(""), alnum(OPTIONAL_LENGTH[fmt])))
    issuer = draw(st.text(alphabet=LETTERS, min_size=3, max_size=3))
    nationality = draw(st.text(alphabet=LETTERS, min_size=3, max_size=3))
    number = draw(alnum(9))
    values = {
        "document_code": code,
        "issuer": issuer,
        "names": "<".join(surname) + "<<" + "<".join(given_names),
        "document_number": number,
        "nationality": nationality,
        "birth_date": birth.strftime("%y%m%d"),
        "sex": sex,
        "expiry_date": expiry.strftime("%y%m%d"),
        "optional_data": optional,
    }
    style = draw(st.sampled_from(["en", "bilingual", "numeric"]))

    def printed(d: date) -> str:
        if style == "numeric":
            return d.strftime("%d.%m.%Y")
        if style == "bilingual":
            return f"{d.day:02d} {d.strftime('%b').upper()}/{FRENCH[d.month]} {d.strftime('%y')}"
        return d.strftime("%d %b %y").upper()

    nationality_word = draw(st.sampled_from([nationality, nationality + "IAN"]))
    viz = [
        "PASSPORT/PASSEPORT" if code == "P" else "IDENTITY CARD/CARTE D'IDENTITE",
        "Type/Type",
        code,
        "Code/Code",
        issuer,
        "Document No./No",
        number,
        "Surname/Nom",
        " ".join(surname),
        "Given names/Prenoms",
        " ".join(given_names),
        "Nationality/Nationalite",
        nationality_word,
        "Date of birth/Date de naissance",
        printed(birth),
        "Sex/Sexe",
        "X" if sex == "<" else sex,
        "Date of expiry/Date d'expiration",
        printed(expiry),
    ]
    if optional:
        viz += ["Personal No./No personnel", optional]
    return build_mrz(fmt, values), viz


def _fields(m: Mrz) -> tuple[object, ...]:
    # "<" and "X" both mean "unspecified" for sex (ICAO 9303 part 4): the same field value.
    return tuple(("X" if m.sex == "<" else m.sex) if f == "sex" else getattr(m, f) for f in FIELDS)


def _reasons(m: Mrz, viz: list[str]) -> list[str]:
    return validate(DocumentRead(m.document_type, m, viz, {}, True), today=TODAY, config=CONFIG)


@settings(max_examples=300, deadline=None)
@given(documents())
def test_generated_document_is_fully_confirmed(doc: tuple[list[str], list[str]]) -> None:
    lines, viz = doc
    m = parse(lines, today=TODAY)
    assert m is not None and m.valid
    assert cross_check(m, viz).unconfirmed == ()
    assert _reasons(m, viz) == []


@settings(max_examples=1500, deadline=None)
@given(documents(), st.data())
def test_single_corruption_is_detected_or_corrected(
    doc: tuple[list[str], list[str]], data: st.DataObject
) -> None:
    lines, viz = doc
    li = data.draw(st.integers(0, len(lines) - 1), label="line")
    pos = data.draw(st.integers(0, len(lines[li]) - 1), label="position")
    new = data.draw(st.sampled_from(CHARSET).filter(lambda c: c != lines[li][pos]), label="character")
    corrupted = list(lines)
    corrupted[li] = lines[li][:pos] + new + lines[li][pos + 1 :]
    clean = parse(lines, today=TODAY)
    m = parse(corrupted, today=TODAY)
    assert clean is not None and m is not None
    reasons = _reasons(m, viz)
    assert reasons or _fields(m) == _fields(clean), f"accepted silently: {corrupted} -> {_fields(m)}"


def test_equal_value_swap_in_document_number_is_caught_by_the_visual_zone() -> None:
    # C (12) and 2 weigh the same modulo 10: the MRZ check digits all still hold.
    lines = ["P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<", "L898902C36UTO7408122F1204159ZE184226B<<<<<10"]
    swapped = [lines[0], lines[1].replace("L898902C3", "L89890223")]
    viz = [
        "P",
        "UTO",
        "L898902C3",
        "ERIKSSON",
        "ANNA MARIA",
        "UTOPIAN",
        "12 AUG 74",
        "F",
        "15 APR 12",
        "ZE184226B",
    ]
    m = parse(swapped, today=date(2010, 1, 1))
    assert m is not None and m.valid  # invisible to ICAO check digits
    assert cross_check(m, viz).unconfirmed == ("document_number",)
    clean = parse(lines, today=date(2010, 1, 1))
    assert clean is not None and cross_check(clean, viz).unconfirmed == ()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("12 AUGUST/AOUT 74", [(74, 8, 12)]),
        ("12AUG/AOUT74", [(74, 8, 12)]),
        ("16 APR/AVR 07", [(7, 4, 16)]),
        ("03.11.1999", [(99, 11, 3)]),
        ("1999-11-03", [(99, 11, 3)]),
        ("Date of birth/ Date de naissance", []),
        ("31 FOO 99", []),
    ],
)
def test_visual_dates(text: str, expected: list[tuple[int, int, int]]) -> None:
    assert visual_dates([text]) == expected


def test_unreadable_visual_zone_is_a_reason_not_a_pass() -> None:
    lines = ["P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<", "L898902C36UTO7408122F1204159ZE184226B<<<<<10"]
    m = parse(lines, today=date(2010, 1, 1))
    assert m is not None
    read = DocumentRead(m.document_type, m, ["", " "], {}, True)
    assert "document_visual_zone_unreadable" in validate(read, today=date(2010, 1, 1), config=CONFIG)
    # Not read at all (read_visual_zone off): the MRZ checks alone decide.
    assert (
        validate(DocumentRead(m.document_type, m, [], {}, False), today=date(2010, 1, 1), config=CONFIG) == []
    )


def test_a_printed_type_code_is_never_overridden_by_the_title() -> None:
    # Found by the corruption property: "ID" -> "I<" in the MRZ, on a page printing "ID" and the
    # title IDENTITY CARD. The title vouches for a code only on a page printing no short value that
    # could be one (P, I, ID, AC, ...).
    values = {
        "document_code": "I",
        "issuer": "UTO",
        "names": "BEKKER<<JOHN",
        "document_number": "X1234",
        "nationality": "UTO",
        "birth_date": "800101",
        "sex": "M",
        "expiry_date": "300101",
    }
    m = parse(build_mrz("TD1", values), today=TODAY)
    assert m is not None and m.valid and m.document_code == "I"
    viz = ["IDENTITY CARD", "UTO", "X1234", "BEKKER", "JOHN", "UTOPIAN", "01 JAN 80", "M", "01 JAN 30"]
    assert "document_code" in cross_check(m, viz).confirmed  # no code printed: the title decides
    assert cross_check(m, [*viz, "ID"]).unconfirmed == ("document_code",)
