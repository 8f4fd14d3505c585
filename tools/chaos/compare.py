"""Comparing a run's canonical dump with the clean run's: per collection or topic, key by key."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tools.chaos.canon import Canonical

EXAMPLES = 3
_SHOWN = 160


@dataclass(slots=True)
class Difference:
    """One differing key and the first paths at which it differs."""

    key: str
    paths: list[tuple[str, str, str]]
    """(path, clean value, this run's value), values shown short."""


@dataclass(slots=True)
class Comparison:
    """How one collection or topic of a run compares with the clean run's."""

    name: str
    matching: int = 0
    differing: int = 0
    missing: int = 0
    """In the clean run, not in this one."""
    extra: int = 0
    """In this run, not in the clean one."""
    differ_examples: list[Difference] = field(default_factory=list)
    missing_examples: list[str] = field(default_factory=list)
    extra_examples: list[str] = field(default_factory=list)
    differing_fields: dict[str, int] = field(default_factory=dict)
    """How many differing keys differ at each path (list positions masked)."""

    @property
    def identical(self) -> bool:
        """Whether every key matches."""
        return not (self.differing or self.missing or self.extra)

    def to_json(self) -> dict[str, Any]:
        """The comparison as JSON-able data."""
        return {
            "matching": self.matching,
            "differing": self.differing,
            "missing": self.missing,
            "extra": self.extra,
            "differing_fields": dict(sorted(self.differing_fields.items())),
            "differ_examples": [
                {"key": d.key, "paths": [list(p) for p in d.paths]} for d in self.differ_examples
            ],
            "missing_examples": self.missing_examples,
            "extra_examples": self.extra_examples,
        }


def _short(value: Canonical) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 1] + "…"


def differences(
    clean: Canonical, other: Canonical, path: str = "", limit: int = 50
) -> list[tuple[str, Canonical, Canonical]]:
    """The paths at which two canonical values differ, outermost first, at most ``limit``."""
    if clean == other:
        return []
    if isinstance(clean, dict) and isinstance(other, dict):
        found: list[tuple[str, Canonical, Canonical]] = []
        for key in sorted(set(clean) | set(other)):
            where = f"{path}.{key}" if path else key
            found.extend(
                differences(clean.get(key, "(absent)"), other.get(key, "(absent)"), where, limit)
            )
            if len(found) >= limit:
                break
        return found[:limit]
    if isinstance(clean, list) and isinstance(other, list) and len(clean) == len(other):
        found = []
        for index, (a, b) in enumerate(zip(clean, other, strict=True)):
            found.extend(differences(a, b, f"{path}[{index}]", limit))
            if len(found) >= limit:
                break
        return found[:limit]
    return [(path or "(whole)", clean, other)]


def field_pattern(path: str) -> str:
    """A path with list positions masked, so alike differences count together."""
    out, depth = [], 0
    for char in path:
        if char == "[":
            depth += 1
            out.append("[]")
        elif char == "]":
            depth -= 1
        elif depth == 0:
            out.append(char)
    return "".join(out)


def compare(
    name: str,
    clean: Mapping[str, Canonical],
    other: Mapping[str, Canonical],
    *,
    examples: int = EXAMPLES,
) -> Comparison:
    """Key by key: matching, differing (with the paths), missing and extra keys."""
    result = Comparison(name)
    for key in sorted(clean):
        if key not in other:
            result.missing += 1
            if len(result.missing_examples) < examples:
                result.missing_examples.append(key)
            continue
        if clean[key] == other[key]:
            result.matching += 1
            continue
        result.differing += 1
        paths = differences(clean[key], other[key])
        for pattern in dict.fromkeys(field_pattern(p) for p, _, _ in paths):
            result.differing_fields[pattern] = result.differing_fields.get(pattern, 0) + 1
        if len(result.differ_examples) < examples:
            shown = [(p, _short(a), _short(b)) for p, a, b in paths[:4]]
            result.differ_examples.append(Difference(key, shown))
    for key in sorted(set(other) - set(clean)):
        result.extra += 1
        if len(result.extra_examples) < examples:
            result.extra_examples.append(key)
    return result
