"""Searching stored documents and messages for a person's data, however it was written."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

_SEPARATORS = re.compile(r"[\s\-.()]")


def _forms(needle: str) -> set[str]:
    """The needle as written, inside a JSON string (\\u escapes), and without separators."""
    forms = {needle, json.dumps(needle)[1:-1]}
    if any(c.isdigit() for c in needle):
        forms.add(_SEPARATORS.sub("", needle))
    return {f for f in forms if f}


def _texts(value: Any) -> Iterator[str]:
    """Every string inside a value: keys and values of documents, items of lists, bytes."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, bytes | bytearray):
        yield bytes(value).decode("utf-8", errors="replace")
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield str(key)
            yield from _texts(item)
    elif isinstance(value, Iterable):
        for item in value:
            yield from _texts(item)
    elif value is not None:
        yield str(value)


def personal_data_in(value: Any, needles: Iterable[str]) -> list[str]:
    """The needles found anywhere in a value (documents, messages, strings, bytes).

    Phone numbers are compared with their separators removed, so "138 0013 8000" is
    found as "13800138000" too; text inside JSON strings is found escaped or not.
    """
    texts = list(_texts(value))
    haystacks = [*texts, *(_SEPARATORS.sub("", t) for t in texts)]
    return [
        needle
        for needle in needles
        if any(form in hay for form in _forms(needle) for hay in haystacks)
    ]
