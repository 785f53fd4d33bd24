"""MRZ versus visual zone: every MRZ field must be printed on the page too.

ICAO 9303 check digits cover the document number, the dates and the optional data, and even
there the 7-3-1 sum cannot see swaps between characters of equal value modulo 10 (0/A/K/U,
1/B/L/V, ...). Names, issuer, nationality, sex and document code have no check digit at all. The
visual zone (VIZ) prints each of those fields once more, so a wrong MRZ character shows up as a
field the page does not confirm.

``cross_check`` is pure: it takes the parsed MRZ and the recognised VIZ text lines and returns the
fields the page does not confirm. A printed value is a run of words between captions, slashes
and dates, and it must show the whole field (a name's word breaks too, where the MRZ truncated
it). Each field needs its own printed value (a bipartite matching of fields to values), so one
printed word cannot confirm two fields: when the issuer and the nationality are both ``UTO`` the
page must show ``UTO`` twice (or ``UTO`` and ``UTOPIAN``).

Known limits (they are false alarms or narrow gaps, never a crash): a field whose value is one of
the form's caption words (``DATE``, ``NOM``...) is never confirmed; a corrupted value that is
itself printed elsewhere on the page as a value of its own (e.g. a surname one letter away from
the place of birth) is confirmed by it; on a page that prints no type code (no short value such as
``I``, ``ID``, ``AC``) a one-letter document code is checked against the title only (passport, or
identity / travel document).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date

from kyc.mrz import FILLER, FORMAT_FIELDS, Mrz

# Confusions a VIZ OCR makes between glyphs of different ICAO values: folded on both sides, so an
# OCR slip in the VIZ does not raise a false alarm. None of these pairs is equal modulo 10, so the
# same slip in a check-digit-covered MRZ field still fails its check digit (G/6 is not folded:
# G = 16), and a names field holds letters only (the MRZ parser turns digits there into letters).
_FOLD = str.maketrans("01582", "OISBZ")

# Words of the printed form itself (English/French ICAO labels): never evidence for a field.
LABEL_WORDS = frozenset(
    """
    PASSPORT PASSEPORT PASAPORTE TYPE CODE OF ISSUING STATE DE L ETAT EMETTEUR SURNAME NOM NAMES
    GIVEN NAME PRENOMS NATIONALITY NATIONALITE DATE BIRTH NAISSANCE PERSONAL NO PERSONNEL SEX
    SEXE PLACE LIEU ISSUE DELIVRANCE AUTHORITY AUTORITE EXPIRY EXPIRATION D HOLDER S SIGNATURE
    DU TITULAIRE IDENTITY CARD CARTE IDENTITE DOCUMENT NUMBER NUMERO PRIMARY SECONDARY
    IDENTIFIER IDENTIFIANT PRIMAIRE SECONDAIRE NOMBRES APELLIDOS VALID UNTIL VALIDE OFFICIAL
    TRAVEL OFFICIEL VOYAGE
    """.split()  # noqa: SIM905 (a word list reads better as text)
)

_MONTHS = {
    "JAN": 1, "FEB": 2, "MAR": 3, "APR": 4, "MAY": 5, "JUN": 6, "JUL": 7, "AUG": 8, "SEP": 9,
    "OCT": 10, "NOV": 11, "DEC": 12,
    # French (ICAO specimens are bilingual); JUIN/JUIL need four letters
    "JANV": 1, "FEV": 2, "FEVR": 2, "MARS": 3, "AVR": 4, "AVRI": 4, "MAI": 5, "JUIN": 6,
    "JUIL": 7, "AOU": 8, "AOUT": 8, "SEPT": 9,
}  # fmt: skip
_NUMERIC_DATE = re.compile(r"\b(\d{1,2})\s*[./-]\s*(\d{1,2})\s*[./-]\s*(\d{4}|\d{2})\b")
_ISO_DATE = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")
_NAMED_DATE = re.compile(
    r"\b(\d{1,2})\s*[ ./-]?\s*([A-Z]{3,9})(?:\s*/\s*[A-Z]{3,9})?\s*[ ./-]?\s*(\d{4}|\d{2})\b"
)
_TOKEN = re.compile(r"[A-Z0-9]+")


@dataclass(frozen=True)
class VisualCheck:
    """``unconfirmed``: MRZ field names the page does not show (empty = all confirmed)."""

    confirmed: tuple[str, ...]
    unconfirmed: tuple[str, ...]


def _month(word: str) -> int | None:
    for n in (4, 3):
        if word[:n] in _MONTHS:
            return _MONTHS[word[:n]]
    return None


def _line_dates(text: str) -> tuple[list[tuple[int, int, int]], str]:
    """The dates in one upper-case line, and the line with them blanked out (a month name or a
    day printed inside a date is not a word that can confirm another field)."""
    found: list[tuple[int, int, int, int]] = []  # (start, yy, mm, dd)

    def named(m: re.Match[str]) -> str:
        month = _month(m.group(2))
        if month is None:
            return m.group(0)
        found.append((m.start(), int(m.group(3)) % 100, month, int(m.group(1))))
        return " | "

    def numeric(m: re.Match[str]) -> str:
        found.append((m.start(), int(m.group(3)) % 100, int(m.group(2)), int(m.group(1))))
        return " | "

    def iso(m: re.Match[str]) -> str:
        found.append((m.start(), int(m.group(1)) % 100, int(m.group(2)), int(m.group(3))))
        return " | "

    rest = _ISO_DATE.sub(iso, text)
    rest = _NUMERIC_DATE.sub(numeric, rest)
    rest = _NAMED_DATE.sub(named, rest)
    dates = [(y, mo, d) for _, y, mo, d in sorted(found) if 1 <= mo <= 12 and 1 <= d <= 31]
    return dates, rest


def visual_dates(lines: Iterable[str]) -> list[tuple[int, int, int]]:
    """Every date printed on the page as (two-digit year, month, day): ``12 AUG 74``,
    ``12 AUGUST/AOUT 74``, ``12AUG/AOUT 74``, ``12.08.1974``, ``1974-08-12``."""
    return [d for line in lines for d in _line_dates(_ascii(line.upper()))[0]]


def _ascii(text: str) -> str:
    """Compatibility forms folded (a recogniser trained on CJK text returns full-width ``Ｆ``),
    accents dropped."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


@dataclass(frozen=True)
class Segment:
    """A printed value: consecutive words of one line between labels, slashes and dates, joined
    without spaces (OCR splits and joins words unpredictably: ``ZE 184226 B``, ``ANNAMARIA``),
    OCR-folded. ``after_caption``: the field whose caption the page shows just before it
    (``given_names`` after "Given names", ``optional_data`` after "Personal No."), else ``""``."""

    words: tuple[str, ...]
    after_caption: str = ""

    @property
    def text(self) -> str:
        return "".join(self.words)


def visual_segments(lines: Sequence[str]) -> list[Segment]:
    """The page's printed values outside its dates, in reading order."""
    out: list[Segment] = []
    caption = ""
    for line in lines:
        text = _line_dates(_ascii(line.upper()))[1]
        found = False
        for piece in re.split(r"[/|]", text):
            run: list[str] = []
            for w in [*_TOKEN.findall(piece), ""]:
                if w in _CAPTIONS:
                    caption = _CAPTIONS[w]
                if w and w not in LABEL_WORDS:
                    run.append(w.translate(_FOLD))
                elif run:
                    out.append(Segment(tuple(run), caption))
                    run, caption, found = [], "", True
        if not found and line.strip() and not any(w in _CAPTIONS for w in _TOKEN.findall(text)):
            caption = ""  # a caption labels only the value right after it
    return out


# Caption words of the two fields that may be empty in the MRZ (ICAO 9303 part 4 captions in
# English / French / Spanish): a value printed under them must be in the MRZ too.
_CAPTIONS = {
    "GIVEN": "given_names", "PRENOMS": "given_names", "NOMBRES": "given_names",
    "SECONDARY": "given_names", "PERSONAL": "optional_data", "PERSONNEL": "optional_data",
}  # fmt: skip


def _titles(lines: Iterable[str]) -> set[str]:
    return {w for line in lines for w in _TOKEN.findall(_ascii(line.upper()))}


def _yymmdd(d: date | None) -> tuple[int, int, int] | None:
    return None if d is None else (d.year % 100, d.month, d.day)


MANDATORY = ("document_code", "issuer", "nationality", "document_number", "surname")


def _requirements(mrz: Mrz) -> list[tuple[str, tuple[str, ...]]]:
    """(field, words) the page must show; OCR-folded. An empty mandatory field stays in, and no
    printed value can confirm it."""
    req = [(f, getattr(mrz, f)) for f in (*MANDATORY, "given_names", "optional_data")]
    req.append(("sex", "X" if mrz.sex == FILLER else mrz.sex))
    split = [(f, tuple(w.translate(_FOLD) for w in re.split(r"[<\s]+", v) if w)) for f, v in req]
    return [(f, ws) for f, ws in split if ws or f in MANDATORY]


def _confirms(segment: Segment, words: tuple[str, ...], field: str, *, truncation: str = "") -> bool:
    """A printed value shows the whole field: the same text (word breaks aside: OCR drops and
    adds spaces); for a name the MRZ shortened, the same words and then more (``cut``: the last
    MRZ word may be the start of a printed one); for a three-letter nationality, a word starting
    with it (UTOPIAN)."""
    if not words:
        return False
    text = "".join(words)
    if segment.text == text:
        return True
    if truncation:
        n, shown = len(words), segment.words
        if len(shown) < n or shown[: n - 1] != words[:-1]:
            return False
        last = shown[n - 1]
        return last == words[-1] if truncation == "dropped" else last.startswith(words[-1])
    return field == "nationality" and len(text) == 3 and segment.text.startswith(text)


def _names_truncation(mrz: Mrz) -> str:
    """How the MRZ names field may have been cut short (ICAO truncates long names): ``"cut"``
    when it is full (its last word may be cut), ``"dropped"`` when it ends in a single filler
    (whole words that did not fit may be missing after it), ``""`` otherwise."""
    for line in FORMAT_FIELDS[mrz.format]:
        for f in line:
            if f.name == "names":
                raw = mrz.lines[f.line][f.start : f.end]
                if not raw.endswith(FILLER):
                    return "cut"
                return "" if raw.endswith(FILLER * 2) else "dropped"
    return ""


def _match(options: list[list[int]]) -> list[int | None]:
    """Maximum bipartite matching (Kuhn): requirement i -> one of ``options[i]``, each used once."""
    owner: dict[int, int] = {}

    def augment(i: int, seen: set[int]) -> bool:
        for t in options[i]:
            if t not in seen:
                seen.add(t)
                if t not in owner or augment(owner[t], seen):
                    owner[t] = i
                    return True
        return False

    for i in range(len(options)):
        augment(i, set())
    got: list[int | None] = [None] * len(options)
    for t, i in owner.items():
        got[i] = t
    return got


def _code_from_title(code: str, segments: list[Segment], titles: set[str]) -> bool:
    """For a page that prints no type code at all: a one-letter code agrees with the title
    (PASSPORT for P; IDENTITY / TRAVEL DOCUMENT / CARD for I, A, C)."""
    # Any short printed value that could be a type code (P, I, ID, AC, ...) means the page prints
    # one: then the code must match it, never the title.
    if len(code) != 1 or any(len(s.text) <= 2 and s.text[0] in "PIACV" for s in segments):
        return False
    if code == "P":
        return bool(titles & {"PASSPORT", "PASSEPORT", "PASAPORTE", "REISEPASS"})
    return code in "IAC" and bool(titles & {"IDENTITY", "IDENTITE", "TRAVEL", "CARD", "CARTE", "VOYAGE"})


def cross_check(mrz: Mrz, visual_lines: Sequence[str]) -> VisualCheck:
    """Which MRZ fields the visual zone confirms. Each field needs its own printed value."""
    segments = visual_segments(visual_lines)
    req = _requirements(mrz)
    last_name_part = "given_names" if mrz.given_names else "surname"
    cut = _names_truncation(mrz)
    got = _match(
        [
            [
                j
                for j, s in enumerate(segments)
                if _confirms(s, v, f, truncation=cut if f == last_name_part else "")
            ]
            for f, v in req
        ]
    )
    ok = {f: g is not None for (f, _), g in zip(req, got, strict=True)}
    # A captioned value the MRZ does not have at all (a one-letter given name or personal
    # number turned into a filler leaves the field empty, with nothing to match).
    for f in ("given_names", "optional_data"):
        if f not in ok and any(s.after_caption == f for s in segments):
            ok[f] = False
    dates = visual_dates(visual_lines)
    date_req = [(f, _yymmdd(getattr(mrz, f))) for f in ("birth_date", "expiry_date")]
    date_got = _match([[j for j, d in enumerate(dates) if d == want] for _, want in date_req])
    ok |= {f: g is not None for (f, _), g in zip(date_req, date_got, strict=True)}
    if not ok["document_code"]:
        ok["document_code"] = _code_from_title(mrz.document_code, segments, _titles(visual_lines))
    return VisualCheck(
        confirmed=tuple(f for f, v in ok.items() if v), unconfirmed=tuple(f for f, v in ok.items() if not v)
    )
