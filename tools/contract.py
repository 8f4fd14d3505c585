"""Write or check the published contract: docs/asyncapi.yaml and docs/schemas/.

python -m tools.contract write   # bring the files up to date with the code
python -m tools.contract check   # exit 1, naming each file that differs from the code

``docs/schemas/<topic>/<n>.schema.json`` is revision ``n`` of a topic's JSON Schema
and ``<n>.examples.json`` its example message values. When the code's schema differs
from a topic's newest revision, ``write`` adds revision n+1; earlier revisions and their
examples are never rewritten, so the compatibility tests can compare them with the
current one. The newest revision's examples follow the code's examples.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.contracts import ALL_TOPICS, Topic
from shared.contracts.asyncapi import asyncapi_document, asyncapi_yaml
from shared.contracts.examples import example_values
from shared.contracts.schemas import Schema, topic_schema, without_id

ROOT = Path(__file__).resolve().parent.parent
ASYNCAPI_FILE = Path("docs/asyncapi.yaml")
SCHEMAS_DIR = Path("docs/schemas")
_REVISION_FILE = re.compile(r"([1-9][0-9]*)\.schema\.json")


@dataclass(frozen=True)
class Revision:
    """One committed revision of a topic's schema."""

    number: int
    schema: Schema


def dump_json(value: Any) -> str:
    """The text a contract JSON file holds: indented, non-ASCII kept, a final newline."""
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"


def schema_path(topic: Topic, revision: int) -> Path:
    """Where revision ``revision`` of a topic's schema is kept, relative to the repository."""
    return SCHEMAS_DIR / topic.name / f"{revision}.schema.json"


def examples_path(topic: Topic, revision: int) -> Path:
    """Where the examples of a topic's schema revision are kept, relative to the repository."""
    return SCHEMAS_DIR / topic.name / f"{revision}.examples.json"


def current_revision(topic: Topic, newest: Revision | None) -> int:
    """The revision the code's schema is: the newest when unchanged, else the next one."""
    if newest is None:
        return 1
    unchanged = without_id(newest.schema) == without_id(topic_schema(topic, newest.number))
    return newest.number if unchanged else newest.number + 1


def planned_files(newest: Mapping[str, Revision | None]) -> dict[Path, str]:
    """Every file the code's contract consists of, given each topic's newest committed revision."""
    files = {ASYNCAPI_FILE: asyncapi_yaml(asyncapi_document())}
    for topic in ALL_TOPICS:
        revision = current_revision(topic, newest.get(topic.name))
        files[schema_path(topic, revision)] = dump_json(topic_schema(topic, revision))
        files[examples_path(topic, revision)] = dump_json(example_values(topic))
    return files


def differences(planned: Mapping[Path, str], committed: Mapping[Path, str | None]) -> list[str]:
    """What differs between the planned files and the committed ones, one line per file."""
    problems = []
    for path, text in planned.items():
        found = committed.get(path)
        if found is None:
            problems.append(f"{path}: missing")
        elif found != text:
            problems.append(f"{path}: differs from what the code generates")
    return problems


def revisions(root: Path, topic: Topic) -> list[Revision]:
    """The committed revisions of a topic's schema, oldest first."""
    folder = root / SCHEMAS_DIR / topic.name
    found = []
    for path in folder.glob("*.schema.json") if folder.is_dir() else ():
        match = _REVISION_FILE.fullmatch(path.name)
        if match:
            found.append(Revision(int(match.group(1)), json.loads(path.read_text("utf-8"))))
    return sorted(found, key=lambda revision: revision.number)


def newest_revisions(root: Path) -> dict[str, Revision | None]:
    """Each topic's newest committed revision, or None when it has none yet."""
    newest: dict[str, Revision | None] = {}
    for topic in ALL_TOPICS:
        found = revisions(root, topic)
        newest[topic.name] = found[-1] if found else None
    return newest


def _read(root: Path, paths: Sequence[Path]) -> dict[Path, str | None]:
    return {p: (root / p).read_text("utf-8") if (root / p).is_file() else None for p in paths}


def check(root: Path = ROOT) -> list[str]:
    """The files that differ from what the code generates (empty when all are up to date)."""
    planned = planned_files(newest_revisions(root))
    return differences(planned, _read(root, list(planned)))


def write(root: Path = ROOT) -> list[Path]:
    """Write the files that differ from what the code generates; returns those written."""
    planned = planned_files(newest_revisions(root))
    committed = _read(root, list(planned))
    written = []
    for path, text in planned.items():
        if committed[path] != text:
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            (root / path).write_text(text, "utf-8")
            written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``write`` or ``check``."""
    parser = argparse.ArgumentParser(prog="python -m tools.contract", description=__doc__)
    parser.add_argument("command", choices=("write", "check"))
    parser.add_argument("--root", type=Path, default=ROOT, help="the repository (default: this)")
    args = parser.parse_args(argv)
    if args.command == "write":
        for path in write(args.root):
            sys.stdout.write(f"wrote {path}\n")
        return 0
    problems = check(args.root)
    for problem in problems:
        sys.stderr.write(f"{problem}\n")
    if problems:
        sys.stderr.write("the published contract is out of date: python -m tools.contract write\n")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
