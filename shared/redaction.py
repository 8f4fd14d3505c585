"""Redaction of personal data in free text: phones, Chinese resident ID numbers, e-mails, names.

Pure and deterministic: the same text (and names) always gives the same result, and
redacting a redacted text changes nothing. The placeholders hold no digit, ``@`` or
letter a pattern looks for, and everything that is not personal data (the words a
complaint is routed by, order numbers with a prefix, the 12315 hotline) is left alone.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

PHONE = "[phone]"
ID_NUMBER = "[id]"
EMAIL = "[email]"
NAME = "[name]"
ERASED = "[erased]"
"""What stands where an erased customer's free text was."""

# Not glued to a Latin letter or digit on either side: "SO13800138000" is an order number.
_START = r"(?<![0-9A-Za-z])"
_END = r"(?![0-9A-Za-z])"
_SEP = r"[ \t\-.\u00a0\u3000]?"  # one optional separator between digits

_EMAIL = re.compile(
    r"[A-Za-z0-9._%+\-]+\s?[@＠]\s?[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+",
)
# Resident ID: 6-digit region, birth date (1800-2099), 3-digit sequence, check digit or X;
# the 15-digit first generation has a two-digit year and no check digit.
_DATE = r"(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])"
_ID_NUMBER = re.compile(
    _START
    + r"(?:\d{6}"
    + _SEP
    + r"(?:18|19|20)\d{2}"
    + _DATE
    + _SEP
    + r"\d{3}[\dXx]"
    + r"|\d{6}"
    + _SEP
    + r"\d{2}"
    + _DATE
    + _SEP
    + r"\d{3})"
    + _END
)
_COUNTRY = r"(?:(?:\+|00)\s?86|\(\s?(?:\+|00)?86\s?\)|86(?=[ \-]|1[3-9]\d{9}(?!\d)))"
# Mainland mobile: 1[3-9] and 9 more digits, with or without the country code, separators
# anywhere ("138 0013 8000", "+86-138-0013-8000", "(+86)13800138000").
_MOBILE = re.compile(_START + r"(?:" + _COUNTRY + _SEP + r")?1[3-9]\d(?:" + _SEP + r"\d){8}" + _END)
# Landlines: trunk 0, 2-3 digit area code, 7-8 digit number ("021-6234 5678", "(0755)8888 1234").
_LANDLINE = re.compile(
    _START
    + r"(?:"
    + _COUNTRY
    + _SEP
    + r")?(?:\(0?\d{2,3}\)|0\d{2,3})"
    + _SEP
    + r"\d{3,4}"
    + _SEP
    + r"\d{4}"
    + _END
)
# Any other number written internationally: a + and 7 to 15 digits.
_INTERNATIONAL = re.compile(r"(?<![0-9A-Za-z+])\+\d(?:" + _SEP + r"\d){6,14}" + _END)


def _name_pattern(name: str) -> re.Pattern[str] | None:
    parts = name.split()
    if not parts or len("".join(parts)) < 2:
        return None  # one letter would strike half the text
    if all(part.isascii() for part in parts):
        orders = [parts, parts[::-1]] if len(parts) == 2 else [parts]
        # Whole words only ("Li" is not in "Lily"); an edge that is not a letter or digit
        # needs no anchor (and must have none, or redacting twice would differ).
        alternatives = [
            (_START if order[0][0].isalnum() else "")
            + r"\s+".join(re.escape(p) for p in order)
            + (_END if order[-1][-1].isalnum() else "")
            for order in orders
        ]
        return re.compile("|".join(alternatives), re.IGNORECASE)
    # Chinese names are written without spaces, sometimes with one between the characters.
    characters = [re.escape(c) for c in "".join(parts)]
    return re.compile(r"\s?".join(characters))


_PLACEHOLDER = re.compile("|".join(re.escape(p) for p in (PHONE, ID_NUMBER, EMAIL, NAME)))


def _outside_placeholders(text: str, pattern: re.Pattern[str]) -> str:
    """Replace the pattern's matches by NAME, never inside a placeholder already there."""
    pieces: list[str] = []
    at = 0
    for placeholder in _PLACEHOLDER.finditer(text):
        pieces.append(pattern.sub(NAME, text[at : placeholder.start()]))
        pieces.append(placeholder.group())
        at = placeholder.end()
    pieces.append(pattern.sub(NAME, text[at:]))
    return "".join(pieces)


def redact(text: str, *, names: Iterable[str] = ()) -> str:
    """The text with the given names, e-mails, resident ID numbers and phone numbers replaced.

    ``names`` are the person's known names (Latin names in either order, any case); the
    redaction of everything else needs no knowledge of the person.
    """
    redacted = text
    for name in sorted({n.strip() for n in names if n and n.strip()}, key=len, reverse=True):
        pattern = _name_pattern(name)
        if pattern is not None:
            redacted = _outside_placeholders(redacted, pattern)
    redacted = _EMAIL.sub(EMAIL, redacted)
    redacted = _ID_NUMBER.sub(ID_NUMBER, redacted)
    redacted = _MOBILE.sub(PHONE, redacted)
    redacted = _LANDLINE.sub(PHONE, redacted)
    return _INTERNATIONAL.sub(PHONE, redacted)
