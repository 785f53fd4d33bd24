"""Property tests of the MRZ alone: generated MRZs parse back to their fields; a single corruption
of a check-digit-covered field is detected or corrected, and what check digits cannot see (names,
issuer, nationality, sex, document code, equal-value swaps) is left to the visual-zone
cross-check, whose property test (test_crosscheck.py) covers every character."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kyc.mrz import CHARSET, DIGITS, LETTERS, build_mrz, char_value, check_digit, parse

TODAY = date(2024, 6, 1)
name = st.text(alphabet=LETTERS, min_size=1, max_size=10)
alnum = st.text(alphabet=LETTERS + DIGITS, min_size=1, max_size=9)
yymmdd = st.dates(min_value=date(1930, 1, 1), max_value=date(2023, 12, 31)).map(
    lambda d: d.strftime("%y%m%d")
)
expiry = st.dates(min_value=date(2024, 6, 2), max_value=date(2060, 12, 31)).map(
    lambda d: d.strftime("%y%m%d")
)


@st.composite
def mrz_values(draw: st.DrawFn) -> tuple[str, dict[str, str]]:
    fmt = draw(st.sampled_from(["TD1", "TD2", "TD3"]))
    values = {
        "document_code": draw(st.sampled_from(["P", "I", "ID", "AC"])) if fmt != "TD3" else "P",
        "issuer": draw(st.text(alphabet=LETTERS, min_size=3, max_size=3)),
        "names": f"{draw(name)}<<{draw(name)}",
        "document_number": draw(alnum),
        "nationality": draw(st.text(alphabet=LETTERS, min_size=3, max_size=3)),
        "birth_date": draw(yymmdd),
        "sex": draw(st.sampled_from(["M", "F", "<"])),
        "expiry_date": draw(expiry),
        "optional_data": draw(st.text(alphabet=DIGITS, max_size=5)),
    }
    return fmt, values


def test_check_digit_icao_examples() -> None:
    assert check_digit("L898902C3") == "6"
    assert check_digit("740812") == "2"
    assert check_digit("120415") == "9"
    assert check_digit("ZE184226B<<<<<") == "1"


@settings(max_examples=200, deadline=None)
@given(mrz_values())
def test_generated_mrz_parses_back(case: tuple[str, dict[str, str]]) -> None:
    fmt, v = case
    lines = build_mrz(fmt, v)
    m = parse(lines, today=TODAY)
    assert m is not None and m.format == fmt
    assert m.valid, m.failed_checks
    assert list(m.lines) == lines
    assert m.document_number == v["document_number"]
    assert m.nationality == v["nationality"]
    assert m.birth_date is not None and m.birth_date.strftime("%y%m%d") == v["birth_date"]
    assert m.expiry_date is not None and m.expiry_date.strftime("%y%m%d") == v["expiry_date"]
    surname, given_names = v["names"].split("<<")
    assert (m.surname, m.given_names) == (surname, given_names)


@settings(max_examples=300, deadline=None)
@given(mrz_values(), st.data())
def test_single_corruption_is_detected_or_corrected(
    case: tuple[str, dict[str, str]], data: st.DataObject
) -> None:
    fmt, v = case
    lines = build_mrz(fmt, v)
    li = data.draw(st.integers(0, len(lines) - 1))
    pos = data.draw(st.integers(0, len(lines[li]) - 1))
    old = lines[li][pos]
    # The 7-3-1 sum works modulo 10: swapping a character for one with the same value mod 10
    # (0/A/K/U, 1/B/L/V, ...) is invisible to every check digit, by design of ICAO 9303.
    new = data.draw(
        st.sampled_from(CHARSET).filter(lambda c: c != old and char_value(c) % 10 != char_value(old) % 10)
    )
    corrupted = list(lines)
    corrupted[li] = lines[li][:pos] + new + lines[li][pos + 1 :]
    m = parse(corrupted, today=TODAY)
    assert m is not None
    clean = parse(lines, today=TODAY)
    assert clean is not None
    if m.valid and list(m.lines) != lines:
        # Accepted with different text: only allowed where no check digit covers the change
        # (names, issuer, sex, nationality), where the visual zone must catch it.
        changed = {
            k
            for k in ("surname", "given_names", "issuer", "sex", "nationality", "document_code")
            if getattr(m, k) != getattr(clean, k)
        }
        # A check-digit repair is never silent: the positions it decided are reported.
        assert changed or m.guessed_positions, "corruption accepted silently with different fields"
    if m.valid and not m.guessed_positions:
        for k in ("document_number", "birth_date", "expiry_date", "optional_data"):
            assert getattr(m, k) == getattr(clean, k), k


@pytest.mark.parametrize("lines", [[], ["P<UTO"], ["A" * 44, "B" * 43]])
def test_bad_layout_is_none(lines: list[str]) -> None:
    assert parse(lines, today=TODAY) is None
