"""Each run against the clean run: as JSON, and as tables for a terminal."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from tools.chaos.canon import Canonical, canonical
from tools.chaos.compare import Comparison, compare
from tools.chaos.dump import letters_by_source
from tools.chaos.runs import RunResult


def stats_entries(stats: Mapping[str, Any]) -> dict[str, Canonical]:
    """A service's /stats as one compared entry per figure."""
    return {str(k): canonical(v) for k, v in stats.items()}


def compare_runs(clean: RunResult, other: RunResult) -> dict[str, Comparison]:
    """Every compared collection, every service's /stats and every output topic, vs clean."""
    out: dict[str, Comparison] = {}
    for name in sorted(set(clean.state.collections) | set(other.state.collections)):
        out[f"state {name}"] = compare(
            name, clean.state.collections.get(name, {}), other.state.collections.get(name, {})
        )
    for service in sorted(set(clean.stats) | set(other.stats)):
        out[f"stats {service}"] = compare(
            service,
            stats_entries(clean.stats.get(service, {})),
            stats_entries(other.stats.get(service, {})),
        )
    for topic in sorted(set(clean.topics) | set(other.topics)):
        a, b = clean.topics.get(topic), other.topics.get(topic)
        out[f"topic {topic}"] = compare(topic, a.bodies if a else {}, b.bodies if b else {})
    return out


def duplicates(result: RunResult) -> dict[str, int]:
    """Per output topic, how many identities came more than once (0 for every topic is right)."""
    return {name: len(t.duplicates) for name, t in result.topics.items()}


def run_json(result: RunResult, comparison: Mapping[str, Comparison] | None) -> dict[str, Any]:
    """One run as JSON-able data (the dumps themselves left out; they can be large)."""
    return {
        "kind": result.kind,
        "error": result.error,
        "seconds": result.seconds,
        "published": result.published,
        "publish_failed": result.publish_failed,
        "caught_up": result.caught_up,
        "settled": result.settled,
        "lags": result.lags,
        "backlog": result.backlog,
        "events": result.events,
        "shutdown_seconds": result.shutdown_seconds,
        "shutdown_stragglers": result.shutdown_stragglers,
        "accounting": result.accounting(),
        "metrics_complete": result.metrics_complete,
        "output_records": {n: t.records for n, t in result.topics.items()},
        "output_identities": {n: len(t.bodies) for n, t in result.topics.items()},
        "duplicates": duplicates(result),
        "duplicate_examples": {
            n: sorted(t.duplicates)[:3] for n, t in result.topics.items() if t.duplicates
        },
        "conflicting_duplicates": {
            n: dict(list(t.conflicting.items())[:3])
            for n, t in result.topics.items()
            if t.conflicting
        },
        "dead_letters": letters_by_source(result.topics),
        "stats": result.stats,
        "unclassified_collections": result.state.unclassified,
        "skipped_collections": result.state.skipped,
        "identical_to_clean": (
            None if comparison is None else all(c.identical for c in comparison.values())
        ),
        "comparison": (
            None if comparison is None else {k: c.to_json() for k, c in comparison.items()}
        ),
    }


def report_json(config: Mapping[str, Any], results: Sequence[RunResult]) -> dict[str, Any]:
    """The whole report: the harness's settings and each run, compared with the clean one."""
    clean = next((r for r in results if r.kind == "clean"), None)
    runs = []
    for result in results:
        comparison = None
        if clean is not None and result is not clean and clean.error is None:
            comparison = compare_runs(clean, result)
        runs.append(run_json(result, comparison))
    return {"config": dict(config), "runs": runs}


def _seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:,.1f}"


def render(report: Mapping[str, Any], console: Console) -> None:
    """Tables: the runs side by side, then what differs from the clean run, per run."""
    runs = report["runs"]
    table = Table(title="runs")
    columns = (
        "run",
        "total s",
        "replay s",
        "catch-up s",
        "settle s",
        "caught up",
        "settled",
        "duplicates",
        "unaccounted",
        "dead letters",
        "differing",
        "slowest stop s",
    )
    for column in columns:
        table.add_column(column, justify="left" if column == "run" else "right")
    for run in runs:
        seconds = run["seconds"]
        unaccounted = [a["unaccounted"] for a in run["accounting"].values()]
        differing = "—"
        if run["comparison"] is not None:
            bad = [k for k, c in run["comparison"].items() if _differs(c)]
            differing = f"{len(bad)} of {len(run['comparison'])}"
        stops = list(run["shutdown_seconds"].values())
        stragglers = run["shutdown_stragglers"]
        table.add_row(
            run["kind"] + (" [red](error)[/]" if run["error"] else ""),
            _seconds(seconds.get("total")),
            _seconds(seconds.get("replay")),
            _seconds(seconds.get("catch_up")),
            _seconds(seconds.get("settle")),
            "yes" if run["caught_up"] else "[red]no[/]",
            "yes" if run["settled"] else "[red]no[/]",
            str(sum(run["duplicates"].values())),
            "n/a" if None in unaccounted or not unaccounted else str(sum(unaccounted)),
            str(sum(run["dead_letters"].values())),
            differing,
            (_seconds(max(stops)) if stops else "—")
            + (f" [red]+{len(stragglers)} killed[/]" if stragglers else ""),
        )
    console.print(table)
    for run in runs:
        if run["error"]:
            console.print(f"[red]{run['kind']}: {run['error']}[/]")
        if run["comparison"] is None:
            continue
        changed = {k: c for k, c in run["comparison"].items() if _differs(c)}
        if not changed:
            console.print(f"[green]{run['kind']}: identical to the clean run[/]")
            continue
        detail = Table(title=f"{run['kind']}: what differs from the clean run")
        for column in ("collection / topic", "match", "differ", "missing", "extra", "fields"):
            detail.add_column(column, justify="right" if column in {"match", "differ"} else "left")
        detail.add_column("examples", overflow="fold")
        for name, c in changed.items():
            fields = sorted(c["differing_fields"].items(), key=lambda kv: -kv[1])[:4]
            detail.add_row(
                name,
                str(c["matching"]),
                str(c["differing"]),
                str(c["missing"]),
                str(c["extra"]),
                "\n".join(f"{f} ({n})" for f, n in fields),
                _examples(c),
            )
        console.print(detail)
    unclassified = sorted({n for run in runs for n in run["unclassified_collections"]})
    if unclassified:
        console.print(
            "collections without a rule (compared with the common artefacts dropped): "
            + ", ".join(unclassified)
        )


def _differs(comparison: Mapping[str, Any]) -> bool:
    return bool(comparison["differing"] or comparison["missing"] or comparison["extra"])


def _examples(c: Mapping[str, Any]) -> str:
    lines = []
    for example in c["differ_examples"][:2]:
        path, clean, other = example["paths"][0]
        lines.append(f"{example['key']} {path}: {clean} → {other}")
    if c["missing_examples"]:
        lines.append("missing: " + ", ".join(c["missing_examples"][:2]))
    if c["extra_examples"]:
        lines.append("extra: " + ", ".join(c["extra_examples"][:2]))
    return "\n".join(lines)


def write_json(report: Mapping[str, Any], path: str) -> None:
    """Write the report as JSON."""
    text = json.dumps(report, indent=2, ensure_ascii=False, default=str, allow_nan=False)
    with open(path, "w", encoding="utf-8") as out:
        out.write(text + "\n")
