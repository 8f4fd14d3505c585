"""Data cleaning on the way in: trim, normalise, and refuse what cannot be right.

Errors name the field and the rule, never the value: they end up in logs, dead letters
and HTTP responses, and the values are personal data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import phonenumbers

from services.profile.policy import PII_FIELDS
from shared.contracts.values import BirthDate as Birthday
from shared.contracts.values import InvalidBirthday
from shared.contracts.values import parse_birthday as read_birthday

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_ATTRIBUTE_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")
_ID_CHECK_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK_CHARS = "10X98765432"
_GENDERS = {
    "f": "F",
    "female": "F",
    "女": "F",
    "m": "M",
    "male": "M",
    "男": "M",
    "other": "other",
    "x": "other",
}
MAX_TEXT = 300
MAX_LIST = 50


class InvalidProfileData(ValueError):
    """Personal data that breaks a cleaning rule; the message names the field, not the value."""

    def __init__(self, field_name: str, reason: str) -> None:
        self.field_name = field_name
        super().__init__(f"{field_name}: {reason}")


@dataclass(frozen=True)
class CleanFields:
    """The fields of a registration or update after cleaning, split by how they are kept."""

    personal: dict[str, str] = field(default_factory=dict)
    """Personal fields in canonical text form (phone in E.164, birthday ISO)."""
    attributes: dict[str, Any] = field(default_factory=dict)
    """Non-personal hard and soft data (gender, size, company, hobbies, ...)."""
    cleared: frozenset[str] = frozenset()
    """Fields the change removes (given as null or empty)."""
    birthday: Birthday | None = None


def normalise_phone(raw: object, default_region: str = "CN") -> str:
    """The E.164 form of a phone number typed in any usual way; raises when it is not valid."""
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidProfileData("phone", "must be a non-empty string")
    try:
        number = phonenumbers.parse(raw.strip(), default_region)
    except phonenumbers.NumberParseException:
        raise InvalidProfileData("phone", "is not a phone number") from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidProfileData("phone", "is not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def parse_birthday(raw: object, at: datetime) -> Birthday:
    """A birthday as every service reads it (``shared.contracts.values.parse_birthday``)."""
    try:
        birthday = read_birthday(raw, at)
    except InvalidBirthday as error:
        raise InvalidProfileData("birthday", str(error)) from None
    if birthday is None:
        raise InvalidProfileData("birthday", "must be a string YYYY-MM-DD or MM-DD")
    return birthday


def _text(name: str, raw: object, *, limit: int = MAX_TEXT) -> str:
    if not isinstance(raw, str):
        raise InvalidProfileData(name, "must be a string")
    text = " ".join(raw.split())
    if not text:
        raise InvalidProfileData(name, "must not be blank")
    if len(text) > limit:
        raise InvalidProfileData(name, f"is longer than {limit} characters")
    return text


def clean_email(raw: object) -> str:
    """An e-mail address trimmed, its domain in lower case."""
    text = _text("email", raw, limit=254)
    if not _EMAIL.fullmatch(text):
        raise InvalidProfileData("email", "is not an e-mail address")
    local, _, domain = text.rpartition("@")
    return f"{local}@{domain.lower()}"


def clean_id_number(raw: object) -> str:
    """A national ID or passport number in upper case; an 18-character mainland ID is checked."""
    text = _text("id_number", raw, limit=32).replace(" ", "").upper()
    if not re.fullmatch(r"[0-9A-Z]{5,32}", text):
        raise InvalidProfileData("id_number", "must be 5-32 letters and digits")
    if len(text) == 18 and text[:17].isdigit():
        total = sum(int(d) * w for d, w in zip(text[:17], _ID_CHECK_WEIGHTS, strict=True))
        if _ID_CHECK_CHARS[total % 11] != text[17]:
            raise InvalidProfileData("id_number", "has a wrong check character")
    return text


def _attribute(name: str, raw: object) -> Any:
    if isinstance(raw, bool | int):
        return raw
    if isinstance(raw, float):
        return raw
    if isinstance(raw, str):
        return _text(name, raw)
    if isinstance(raw, list):
        if len(raw) > MAX_LIST:
            raise InvalidProfileData(name, f"has more than {MAX_LIST} items")
        return [_attribute(name, item) for item in raw if not isinstance(item, list | dict)]
    raise InvalidProfileData(name, "must be text, a number, a flag or a list of them")


def clean_fields(raw: dict[str, Any], *, at: datetime, default_region: str = "CN") -> CleanFields:
    """Clean the ``fields`` of a registration or update; raises InvalidProfileData."""
    personal: dict[str, str] = {}
    attributes: dict[str, Any] = {}
    cleared: set[str] = set()
    birthday: Birthday | None = None
    for name, value in raw.items():
        if not _ATTRIBUTE_NAME.fullmatch(name):
            raise InvalidProfileData("fields", "names must be lower_snake_case, up to 40 chars")
        if value is None or (isinstance(value, str) and not value.strip()):
            cleared.add(name)
            continue
        if name == "phone":
            personal[name] = normalise_phone(value, default_region)
        elif name == "birthday":
            birthday = parse_birthday(value, at)
            personal[name] = birthday.isoformat()
        elif name == "email":
            personal[name] = clean_email(value)
        elif name == "id_number":
            personal[name] = clean_id_number(value)
        elif name in PII_FIELDS:
            personal[name] = _text(name, value)
        elif name == "gender":
            gender = _GENDERS.get(_text(name, value).lower())
            if gender is None:
                raise InvalidProfileData("gender", "must be F, M or other")
            attributes[name] = gender
        elif name == "clothing_size":
            attributes[name] = _text(name, value, limit=10).upper()
        else:
            attributes[name] = _attribute(name, value)
    return CleanFields(personal, attributes, frozenset(cleared), birthday)


def local_date(at: datetime, zone: Any) -> date:
    """The calendar date of an instant in a time zone."""
    return at.astimezone(zone).date()
