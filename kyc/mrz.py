"""ICAO Doc 9303 machine-readable zone: formats, check digits (7-3-1), parsing and correction.

Pure Python, no image code. ``correct_line`` repairs OCR output field by field: numeric fields take
the best digit, alphabetic fields the best letter, and alphanumeric fields protected by a check
digit are searched over their most likely confusions until the check digit holds. A field that
cannot be made to validate is reported, never silently "fixed" into other values.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum

FILLER = "<"
DIGITS = "0123456789"
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
CHARSET = LETTERS + DIGITS + FILLER
LINE_LENGTHS = {"TD1": 30, "TD2": 36, "TD3": 44}
LINE_COUNTS = {"TD1": 3, "TD2": 2, "TD3": 2}

# Glyph confusions of OCR engines on OCR-B, both ways.
_TO_DIGIT = {
    "O": "0",
    "Q": "0",
    "D": "0",
    "U": "0",
    "I": "1",
    "L": "1",
    "T": "1",
    "Z": "2",
    "S": "5",
    "B": "8",
    "G": "6",
    "A": "4",
    "E": "8",
}
_TO_LETTER = {"0": "O", "1": "I", "2": "Z", "5": "S", "8": "B", "6": "G", "4": "A", "7": "T"}


def char_value(ch: str) -> int:
    """ICAO value of one MRZ character: digits 0-9, A=10 .. Z=35, filler 0."""
    if ch in DIGITS:
        return ord(ch) - 48
    if ch in LETTERS:
        return ord(ch) - 55
    if ch == FILLER:
        return 0
    raise ValueError(f"not an MRZ character: {ch!r}")


def check_digit(data: str) -> str:
    """ICAO 9303 check digit of ``data`` (weights 7, 3, 1 repeating, modulo 10) as one character."""
    return str(sum(char_value(c) * (7, 3, 1)[i % 3] for i, c in enumerate(data)) % 10)


class Kind(StrEnum):
    """Character class of an MRZ position."""

    ALPHA = "alpha"  # letters and filler
    NUM = "num"  # digits (filler allowed where ICAO allows empty optional check digits)
    ALNUM = "alnum"
    CHECK = "check"  # a check digit (digit, or filler for an empty optional field)


@dataclass(frozen=True)
class Field:
    name: str
    line: int
    start: int
    end: int
    kind: Kind
    check: str | None = None  # name of the CHECK field protecting this one


def _fields(spec: Sequence[tuple[str, int, int, Kind, str | None]], line: int) -> list[Field]:
    out, pos = [], 0
    for name, length, _, kind, check in ((s[0], s[1], 0, s[3], s[4]) for s in spec):
        out.append(Field(name, line, pos, pos + length, kind, check))
        pos += length
    return out


A, N, X, C = Kind.ALPHA, Kind.NUM, Kind.ALNUM, Kind.CHECK
_LINE_SPECS: dict[str, list[list[tuple[str, int, int, Kind, str | None]]]] = {
    "TD3": [
        [("document_code", 2, 0, A, None), ("issuer", 3, 0, A, None), ("names", 39, 0, A, None)],
        [
            ("document_number", 9, 0, X, "document_number_check"),
            ("document_number_check", 1, 0, C, None),
            ("nationality", 3, 0, A, None),
            ("birth_date", 6, 0, N, "birth_date_check"),
            ("birth_date_check", 1, 0, C, None),
            ("sex", 1, 0, A, None),
            ("expiry_date", 6, 0, N, "expiry_date_check"),
            ("expiry_date_check", 1, 0, C, None),
            ("optional_data", 14, 0, X, "optional_data_check"),
            ("optional_data_check", 1, 0, C, None),
            ("composite_check", 1, 0, C, None),
        ],
    ],
    "TD2": [
        [("document_code", 2, 0, A, None), ("issuer", 3, 0, A, None), ("names", 31, 0, A, None)],
        [
            ("document_number", 9, 0, X, "document_number_check"),
            ("document_number_check", 1, 0, C, None),
            ("nationality", 3, 0, A, None),
            ("birth_date", 6, 0, N, "birth_date_check"),
            ("birth_date_check", 1, 0, C, None),
            ("sex", 1, 0, A, None),
            ("expiry_date", 6, 0, N, "expiry_date_check"),
            ("expiry_date_check", 1, 0, C, None),
            ("optional_data", 7, 0, X, None),
            ("composite_check", 1, 0, C, None),
        ],
    ],
    "TD1": [
        [
            ("document_code", 2, 0, A, None),
            ("issuer", 3, 0, A, None),
            ("document_number", 9, 0, X, "document_number_check"),
            ("document_number_check", 1, 0, C, None),
            ("optional_data", 15, 0, X, None),
        ],
        [
            ("birth_date", 6, 0, N, "birth_date_check"),
            ("birth_date_check", 1, 0, C, None),
            ("sex", 1, 0, A, None),
            ("expiry_date", 6, 0, N, "expiry_date_check"),
            ("expiry_date_check", 1, 0, C, None),
            ("nationality", 3, 0, A, None),
            ("optional_data_2", 11, 0, X, None),
            ("composite_check", 1, 0, C, None),
        ],
        [("names", 30, 0, A, None)],
    ],
}
FORMAT_FIELDS: dict[str, list[list[Field]]] = {
    fmt: [_fields(spec, i) for i, spec in enumerate(lines)] for fmt, lines in _LINE_SPECS.items()
}
# Composite check digit input: (line index, start, end) slices, in order (ICAO 9303 parts 4-6).
_COMPOSITE = {
    "TD3": [(1, 0, 10), (1, 13, 20), (1, 21, 43)],
    "TD2": [(1, 0, 10), (1, 13, 20), (1, 21, 35)],
    "TD1": [(0, 5, 30), (1, 0, 7), (1, 8, 15), (1, 18, 29)],
}


def composite_input(fmt: str, lines: Sequence[str]) -> str:
    return "".join(lines[li][a:b] for li, a, b in _COMPOSITE[fmt])


def _composite_location(fmt: str) -> tuple[int, int]:
    return (1, LINE_LENGTHS[fmt] - 1)


# ---------------------------------------------------------------- correction of one line

Candidates = Sequence[Mapping[str, float]]
"""Per position, candidate characters with a score (higher = more likely); from OCR or a confusion table."""


def candidates_from_text(text: str) -> list[dict[str, float]]:
    """Candidate table for a plain string: the read character first, its usual confusions after."""
    out: list[dict[str, float]] = []
    for ch in text:
        cand = {ch: 1.0}
        for alt in (_TO_DIGIT.get(ch), _TO_LETTER.get(ch)):
            if alt:
                cand.setdefault(alt, 0.3)
        if ch == "K":
            cand.setdefault(FILLER, 0.2)  # a garbled '<' run often reads as K or C
        out.append(cand)
    return out


def _allowed(kind: Kind) -> str:
    return {
        Kind.ALPHA: LETTERS + FILLER,
        Kind.NUM: DIGITS + FILLER,
        Kind.ALNUM: CHARSET,
        Kind.CHECK: DIGITS + FILLER,
    }[kind]


_FLOOR = 1e-3  # score given to a character the OCR did not propose at all
_CONFUSION = 0.05  # score share given to a known confusion of a read character
_PLAUSIBLE = 0.02  # alternatives scoring below this share of the top choice are not tried


def _ranked(cand: Mapping[str, float], kind: Kind) -> list[tuple[str, float]]:
    allowed = _allowed(kind)
    top = max(cand.values()) if cand else 0.0
    scores = dict(cand)
    for c in list(cand):  # known OCR-B confusions stay possible even when the OCR gave them no mass
        for alt in (_TO_DIGIT.get(c), _TO_LETTER.get(c)):
            if alt and scores.get(alt, 0.0) < _CONFUSION * cand[c]:
                scores[alt] = _CONFUSION * cand[c]
    ranked = sorted(
        ((c, s) for c, s in scores.items() if c in allowed and s >= _PLAUSIBLE * top), key=lambda t: -t[1]
    )
    if not ranked:  # nothing allowed was read: every allowed character is equally (un)likely
        ranked = [(c, _FLOOR) for c in allowed]
    return ranked


def _options(cand: Mapping[str, float], kind: Kind) -> list[tuple[str, float]]:
    """Alternatives tried by the check-digit search: the top 3, or all when the read is unusable."""
    ranked = _ranked(cand, kind)
    return ranked if ranked[0][1] <= _FLOOR else ranked[:3]


@dataclass
class LineCorrection:
    """``cost``: sum over positions of -ln(score chosen / score of the OCR's top choice); 0 = as read."""

    text: str
    corrected_positions: list[int] = field(default_factory=list)
    failed_checks: list[str] = field(default_factory=list)
    cost: float = 0.0
    guessed_positions: list[int] = field(default_factory=list)  # chosen by the check-digit search


def correct_line(cands: Candidates, fields: Sequence[Field], *, max_tries: int = 256) -> LineCorrection:
    """Choose, per field, the most likely characters its type allows; search check-digit fields.

    ``cands`` must have the line's exact length. Returns the corrected text, the positions whose
    character differs from the top OCR candidate, and the names of fields whose check digit fails.
    """
    chars = [""] * len(cands)
    top = [max(c.items(), key=lambda t: t[1])[0] if c else "<" for c in cands]
    by_name = {f.name: f for f in fields}
    checked = {f.check: f for f in fields if f.check}
    failed: list[str] = []
    for f in fields:
        if f.kind is Kind.CHECK and f.name in checked:
            continue  # searched together with its data field
        if f.check:
            cf = by_name[f.check]
            opts = [_options(cands[i], f.kind) for i in range(f.start, f.end)]
            copts = _options(cands[cf.start], Kind.CHECK)
            best = _search(opts, copts, max_tries)
            if best is None:
                failed.append(f.name)
                best = ("".join(o[0][0] for o in opts), copts[0][0])
            data, cd = best
            chars[f.start : f.end] = list(data)
            chars[cf.start] = cd
        else:
            for i in range(f.start, f.end):
                chars[i] = _ranked(cands[i], f.kind)[0][0]
    text = "".join(chars)
    kinds = {i: f.kind for f in fields for i in range(f.start, f.end)}
    guessed = [i for i, ch in enumerate(text) if ch != _ranked(cands[i], kinds[i])[0][0]]
    cost = 0.0
    for i, ch in enumerate(text):
        c = cands[i]
        top_score = max(c.values()) if c else 1.0
        cost += math.log(max(top_score, 1e-9) / max(c.get(ch, 0.0), _FLOOR))
    return LineCorrection(
        text, [i for i, (a, b) in enumerate(zip(text, top, strict=True)) if a != b], failed, cost, guessed
    )


def _search(
    opts: list[list[tuple[str, float]]], copts: list[tuple[str, float]], max_tries: int
) -> tuple[str, str] | None:
    """Most likely (data, check digit) pair that validates, trying alternatives at few positions."""
    base = "".join(o[0][0] for o in opts)
    # Positions with a plausible second choice, most ambiguous first.
    amb = sorted(
        (i for i, o in enumerate(opts) if len(o) > 1),
        key=lambda i: -(opts[i][1][1] / max(opts[i][0][1], 1e-9)),
    )[:6]
    tries = 0
    for n_changes in range(0, min(len(amb), 2) + 1):
        for pos in itertools.combinations(amb, n_changes):
            for choice in itertools.product(*[opts[p][1:] for p in pos]):
                data = list(base)
                for p, (c, _) in zip(pos, choice, strict=True):
                    data[p] = c
                s = "".join(data)
                for cd, _ in copts:
                    if _check_ok(s, cd):
                        return s, cd
                tries += 1
                if tries > max_tries:
                    return None
    return None


def _check_ok(data: str, cd: str) -> bool:
    if cd == FILLER:  # ICAO allows '<' as check digit of an all-filler optional field
        return set(data) <= {FILLER}
    return check_digit(data) == cd


# ---------------------------------------------------------------- parsing of a whole MRZ


class MrzError(StrEnum):
    BAD_LAYOUT = "mrz_bad_layout"
    BAD_CHECK_DIGIT = "mrz_bad_check_digit"
    BAD_DATE = "mrz_bad_date"


@dataclass(frozen=True)
class Mrz:
    """A parsed MRZ. Dates are ``date`` or None when unreadable; ``valid`` is True iff all check
    digits hold (``failed_checks`` lists those that do not)."""

    format: str
    lines: tuple[str, ...]
    document_code: str
    issuer: str
    document_number: str
    nationality: str
    birth_date: date | None
    sex: str
    expiry_date: date | None
    surname: str
    given_names: str
    optional_data: str
    failed_checks: tuple[str, ...]
    corrected_positions: tuple[tuple[int, int], ...] = ()
    # (line, position) pairs where a check digit, not the glyph, decided the character: valid
    # but worth a human look, since ICAO check digits cannot rule out every wrong repair.
    guessed_positions: tuple[tuple[int, int], ...] = ()

    @property
    def valid(self) -> bool:
        return not self.failed_checks

    @property
    def document_type(self) -> str:
        return "passport" if self.document_code.startswith("P") else "id_card"


def detect_format(lines: Sequence[str]) -> str | None:
    """``TD1``/``TD2``/``TD3`` from the line count and length, or None."""
    for fmt, n in LINE_LENGTHS.items():
        if len(lines) == LINE_COUNTS[fmt] and all(len(s) == n for s in lines):
            return fmt
    return None


def parse_date(yymmdd: str, *, future: bool, today: date) -> date | None:
    """YYMMDD to a date; birth dates (``future=False``) are put in the past relative to ``today``,
    expiry dates within 50 years of it."""
    if len(yymmdd) != 6 or not yymmdd.isdigit():
        return None
    yy, mm, dd = int(yymmdd[:2]), int(yymmdd[2:4]), int(yymmdd[4:])
    century = today.year // 100 * 100
    year = century + yy
    if not future and year > today.year:
        year -= 100
    if future and year < today.year - 50:
        year += 100
    try:
        return date(year, mm, dd)
    except ValueError:
        return None


def parse(lines: Sequence[str], *, today: date, candidates: Sequence[Candidates] | None = None) -> Mrz | None:
    """Parse and correct an MRZ given as its lines (or per-line candidate tables); None if the
    layout is not TD1/TD2/TD3. ``today`` anchors two-digit years."""
    lines = [s.strip().upper().replace(" ", "") for s in lines]
    fmt = detect_format(lines)
    if fmt is None:
        return None
    cands = list(candidates) if candidates is not None else [candidates_from_text(s) for s in lines]
    fixed: list[str] = []
    failed: list[str] = []
    corrected: list[tuple[int, int]] = []
    guessed: list[tuple[int, int]] = []
    for li, (fields, cand) in enumerate(zip(FORMAT_FIELDS[fmt], cands, strict=True)):
        res = correct_line(cand, fields)
        fixed.append(res.text)
        failed += res.failed_checks
        corrected += [(li, p) for p in res.corrected_positions]
        guessed += [(li, p) for p in res.guessed_positions]
    cl, cp = _composite_location(fmt)
    if not _check_ok(composite_input(fmt, fixed), fixed[cl][cp]):
        failed.append("composite")
    values = {f.name: fixed[f.line][f.start : f.end] for line in FORMAT_FIELDS[fmt] for f in line}
    birth = parse_date(values["birth_date"], future=False, today=today)
    expiry = parse_date(values["expiry_date"], future=True, today=today)
    failed += [
        name for name, d in (("birth_date_format", birth), ("expiry_date_format", expiry)) if d is None
    ]
    surname, _, given = values["names"].partition("<<")
    optional = values.get("optional_data", "") + values.get("optional_data_2", "")
    return Mrz(
        format=fmt,
        lines=tuple(fixed),
        document_code=values["document_code"].rstrip(FILLER),
        issuer=values["issuer"],
        document_number=values["document_number"].rstrip(FILLER),
        nationality=values["nationality"],
        birth_date=birth,
        sex=values["sex"],
        expiry_date=expiry,
        surname=surname.replace(FILLER, " ").strip(),
        given_names=given.replace(FILLER, " ").strip(),
        optional_data=optional.strip(FILLER),
        failed_checks=tuple(failed),
        corrected_positions=tuple(corrected),
        guessed_positions=tuple(guessed),
    )


# ---------------------------------------------------------------- single lines of unknown type

LINE_TYPES: list[tuple[str, int]] = [(fmt, i) for fmt in FORMAT_FIELDS for i in range(LINE_COUNTS[fmt])]


def normalise_length(text: str) -> str:
    """Fit a read line to the nearest ICAO length (30/36/44) within 2 characters by growing or
    shrinking its longest filler run; other lengths are returned unchanged."""
    n = len(text)
    target = min(LINE_LENGTHS.values(), key=lambda t: abs(t - n))
    if n == target or abs(n - target) > 2:
        return text
    runs = [
        (m, i)
        for i in range(n)
        for m in [len(text[i:]) - len(text[i:].lstrip(FILLER))]
        if m and (i == 0 or text[i - 1] != FILLER)
    ]
    if not runs:
        return text
    length, start = max(runs)
    new_len = max(length + target - n, 0)
    return text[:start] + FILLER * new_len + text[start + length :]


def correct_single_line(cands: Candidates, *, max_cost_per_check: float = 3.5) -> str:
    """Best reading of one MRZ line whose document type is unknown (e.g. a line crop).

    Line types with check digits of the right length are tried; a type whose check digits all
    hold wins (fewest changes first). Failing that, a mostly alphabetic line is read as a name
    line (digits between letters become letters). Otherwise the OCR's first choices are kept:
    many national lines follow no ICAO layout, and forcing one would corrupt them.
    """
    n = len(cands)
    top = "".join(max(c.items(), key=lambda t: t[1])[0] if c else FILLER for c in cands)
    best: tuple[float, str] | None = None
    for fmt, li in LINE_TYPES:
        fields = FORMAT_FIELDS[fmt][li]
        n_checks = sum(1 for f in fields if f.check)
        if LINE_LENGTHS[fmt] != n or n_checks == 0:
            continue
        res = correct_line(cands, fields)
        # One check digit validates a random string one time in ten: a line with a single check
        # digit must validate as read; each further check digit buys room for corrections.
        budget = max_cost_per_check * (n_checks - 1)
        if not res.failed_checks and res.cost <= budget and (best is None or res.cost < best[0]):
            best = (res.cost, res.text)
    if best is not None:
        return best[1]
    letters = sum(c in LETTERS for c in top)
    digits = sum(c in DIGITS for c in top)
    # A name line: "SURNAME<<GIVEN" with at most a couple of misread letters.
    if letters >= 5 and digits <= 2 and re.search(r"[A-Z0-9]<<[A-Z0-9]", top):
        chars = list(top)
        for i, c in enumerate(chars):
            # Names hold no digits: a digit touching a letter is a misread letter ("RICARD0<").
            near = top[max(i - 1, 0) : i] + top[i + 1 : i + 2]
            if c in DIGITS and any(x in LETTERS for x in near):
                chars[i] = _ranked(cands[i], Kind.ALPHA)[0][0]
        return "".join(chars)
    return top


# ---------------------------------------------------------------- generation (tests, attacks)


def build_line(fmt: str, line: int, values: Mapping[str, str]) -> str:
    """Compose one MRZ line from field values (padded with fillers), computing check digits."""
    out = ""
    for f in FORMAT_FIELDS[fmt][line]:
        if f.kind is Kind.CHECK:
            out += "?"  # filled below
        else:
            out += values.get(f.name, "")[: f.end - f.start].ljust(f.end - f.start, FILLER)
    chars = list(out)
    for f in FORMAT_FIELDS[fmt][line]:
        if f.check:
            cf = next(g for g in FORMAT_FIELDS[fmt][line] if g.name == f.check)
            chars[cf.start] = check_digit("".join(chars[f.start : f.end]))
    return "".join(chars)


def build_mrz(fmt: str, values: Mapping[str, str]) -> list[str]:
    """All lines of an MRZ with every check digit, including the composite, computed."""
    lines = [build_line(fmt, i, values) for i in range(LINE_COUNTS[fmt])]
    cl, cp = _composite_location(fmt)
    lines[cl] = lines[cl][:cp] + check_digit(composite_input(fmt, lines)) + lines[cl][cp + 1 :]
    return lines
