"""Hostile inputs for the fuzz tests: random bytes and mutated valid events, within a budget.

Every fuzz test takes its example count from ``examples(n)``: ``n`` in the suite, ``n`` times
``HUITOU_FUZZ_SCALE`` when that is set (``HUITOU_FUZZ_SCALE=20`` for a longer hunt).

A mutation takes one valid contract example and breaks it in one place: a field removed, a
field given a hostile value (wrong type, huge or blank string, control and right-to-left
characters, a lone surrogate, NaN, numbers past 64 bits, deep nesting, extreme or naive
timestamps, operator-looking keys), an unknown field added, or the encoded bytes cut or
flipped. Some mutations stay valid on purpose (extra fields, extreme but aware timestamps,
negative amounts): decoding must accept those, and handlers must handle or refuse them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import timedelta, timezone
from typing import Any

from hypothesis import strategies as st

from shared.contracts import Topic
from tests.shared.test_contracts import DEAD_LETTER, INPUT_EXAMPLES, OUTPUT_EXAMPLES

# A value that would leak personal data if a dead letter's reason or a log line echoed it.
CANARY = "王芳13800138000"
_HOLE = "\x00huitou-fuzz-hole\x00"

EXAMPLES: dict[str, dict[str, Any]] = {
    topic.name: example for topic, example, _ in (*INPUT_EXAMPLES, *OUTPUT_EXAMPLES)
}
"""One valid document per contract topic (dead-letter topics aside), from the contract tests."""


def examples(n: int) -> int:
    """The example count of a fuzz test: ``n``, scaled by ``HUITOU_FUZZ_SCALE``."""
    scale = float(os.environ.get("HUITOU_FUZZ_SCALE", "1"))
    return max(1, round(n * scale))


def dead_letter_example(topic: Topic) -> dict[str, Any]:
    """A valid dead letter of the service whose dead-letter topic this is."""
    return {**DEAD_LETTER, "service": topic.name.split(".", 1)[0]}


# Raw JSON fragments that no Python value dumps to: non-standard numbers, deep nesting,
# escapes of lone surrogates and NUL.
_RAW_FRAGMENTS = [
    "NaN",
    "Infinity",
    "-Infinity",
    "1e999",
    "-0",
    "1E+400",
    '"\\ud800"',
    '"\\udfff tail"',
    '"\\u0000"',
    "[" * 2_000 + "]" * 2_000,
    '{"a":' * 600 + "1" + "}" * 600,
    str(2**64),
    str(-(2**63) - 1),
    "9" * 5_000,
]

_HOSTILE_STRINGS = [
    "",
    " ",
    "\t\n",
    CANARY,
    f"{CANARY} 住在南京路1号",
    "x" * 100_000,
    "拉链" * 20_000,
    "\u202egnp.exe",
    "\x00",
    "a\x00b",
    "$where",
    "$gt",
    "a.b",
    "../../etc/passwd",
    "'; DROP TABLE customers; --",
    "{{7*7}}",
    "${jndi:ldap://127.0.0.1/a}",
    "𝕳𝖚𝖎𝖙𝖔𝖚" * 50,
    "\U0001f600" * 1_000,
    "ﷺ" * 100,
    "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59-14:00",
    "2026-02-29T10:00:00+08:00",
    "2026-11-22T14:05:09",
    "2026-11-22T14:05:09Z",
    "2026-11-22T14:05:09+23:59",
    "2026-11-22",
    "0",
    "-0.01",
    "-1157.00",
    "1157.005",
    "1e3",
    "0x10",
    "1" * 60,
    "9" * 400 + ".99",
    "0." + "0" * 50 + "1",
    "CNY ",
    "XXX",
]

_HOSTILE_NUMBERS: list[Any] = [
    0,
    -1,
    1,
    2**31,
    2**63 - 1,
    2**63,
    -(2**63),
    2**64,
    10**40,
    -(10**40),
    0.5,
    -0.0,
    1e308,
    float("nan"),
    float("inf"),
    float("-inf"),
    True,
    False,
]


@dataclass(frozen=True)
class Raw:
    """A JSON fragment put into the document as it is."""

    text: str


Value = Any
json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
)
json_values = st.recursive(
    json_leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
_OFFSETS = [timedelta(hours=h) for h in (-14, -12, -1, 0, 8, 14)] + [
    timedelta(hours=23, minutes=59),
    timedelta(hours=-23, minutes=-59),
]
timestamps = st.datetimes(
    timezones=st.sampled_from([timezone(offset) for offset in _OFFSETS]) | st.none()
).map(lambda moment: moment.isoformat())
"""Any instant from year 1 to 9999, at the widest offsets, or naive."""
hostile_values: st.SearchStrategy[Value] = st.one_of(
    st.sampled_from(_HOSTILE_STRINGS),
    st.sampled_from(_HOSTILE_NUMBERS),
    st.sampled_from(_RAW_FRAGMENTS).map(Raw),
    timestamps,
    st.decimals(allow_nan=False, allow_infinity=False).map(lambda d: format(d, "f")),
    json_values,
)
hostile_keys = st.sampled_from(["$set", "a.b", "", "_id", "__proto__", "constructor", CANARY])


def _paths(document: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key and list index of a document, depth first."""
    found: list[tuple[Any, ...]] = []
    items = (
        document.items()
        if isinstance(document, dict)
        else enumerate(document)
        if isinstance(document, list)
        else ()
    )
    for key, value in items:
        found.append((*prefix, key))
        found.extend(_paths(value, (*prefix, key)))
    return found


def _containers(document: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """The paths of the document's objects (the root included)."""
    found = [prefix] if isinstance(document, dict) else []
    return found + [p for p in _paths(document, prefix) if isinstance(_at(document, p), dict)]


def _at(document: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        document = document[part]
    return document


def _copy(document: Any) -> Any:
    copied: Any = json.loads(json.dumps(document))
    return copied


def encode(document: Any, raw: Raw | None = None) -> bytes:
    """The document as the producer would send it, with a raw fragment in its hole."""
    text = json.dumps(document, ensure_ascii=False, allow_nan=True)
    if raw is not None:
        text = text.replace(json.dumps(_HOLE, ensure_ascii=False), raw.text)
    return text.encode("utf-8", errors="surrogatepass")


def _put(document: Any, path: tuple[Any, ...], value: Value) -> bytes:
    *parents, last = path
    target = _at(document, tuple(parents))
    if isinstance(value, Raw):
        target[last] = _HOLE
        return encode(document, value)
    target[last] = value
    return encode(document)


@st.composite
def mutated(draw: st.DrawFn, example: dict[str, Any]) -> bytes:
    """A valid example broken (or stretched) in one place; see the module docstring."""
    document = _copy(example)
    kind = draw(st.sampled_from(["replace", "remove", "add", "cut", "flip"]))
    if kind == "replace":
        return _put(document, draw(st.sampled_from(_paths(document))), draw(hostile_values))
    if kind == "remove":
        *parents, last = draw(st.sampled_from(_paths(document)))
        del _at(document, tuple(parents))[last]
        return encode(document)
    if kind == "add":
        container = draw(st.sampled_from(_containers(document)))
        key = draw(hostile_keys | st.text(max_size=12))
        return _put(document, (*container, key), draw(hostile_values))
    data = bytearray(encode(document))
    position = draw(st.integers(0, len(data) - 1))
    if kind == "cut":
        return bytes(data[:position])
    data[position] = draw(st.integers(0, 255))
    return bytes(data)


random_bytes: st.SearchStrategy[bytes] = st.one_of(
    st.binary(max_size=512),
    st.sampled_from([b"", b"null", b"[]", b"{}", b'""', b"0", b"\xef\xbb\xbf{}", b"\xff\xfe"]),
    json_values.map(lambda value: json.dumps(value, allow_nan=True).encode()),
    st.binary(min_size=1, max_size=16).map(lambda chunk: chunk * 4_000),
)
"""Bytes that are not an event: noise, JSON of any shape, repeated chunks."""


def message_for(example: dict[str, Any]) -> st.SearchStrategy[bytes]:
    """Random bytes (a third) or a mutation of this valid example (two thirds)."""
    return st.one_of(random_bytes, mutated(example), mutated(example))
