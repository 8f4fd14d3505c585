"""Running the chosen kinds of run one after the other, and the command line."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console

from tools.chaos.dump import profile_decrypt
from tools.chaos.report import render, report_json, write_json
from tools.chaos.runs import RUN_KINDS, HarnessConfig, RunResult, quiet_logs, run_once
from tools.samplechain import generate_chain

# Below the kernel's ephemeral range (32768-60999), where an outgoing connection can hold a
# port for a moment; and apart from up (9092), test (19092), demo (29092), bench (39092).
DEFAULT_KAFKA_PORT = 31092
DEFAULT_MONGO_PORT = 31017
DEFAULT_PORT_BASE = 18600


def harness_config_json(config: HarnessConfig) -> dict[str, Any]:
    """The settings of a harness run as JSON-able data."""
    data = asdict(config)
    return {k: str(v) if isinstance(v, Path | date) else v for k, v in data.items()}


async def run_harness(
    config: HarnessConfig,
    kinds: Sequence[str] = RUN_KINDS,
    *,
    say: Callable[[str], None] = lambda _: None,
) -> tuple[dict[str, Any], list[RunResult]]:
    """Generate the chain once, run each kind in turn; the report and the runs themselves.

    The clean run goes first whenever it is among the kinds, so the others compare with it.
    """
    unknown = [k for k in kinds if k not in RUN_KINDS]
    if unknown:
        raise ValueError(f"unknown runs {', '.join(unknown)}; expected {', '.join(RUN_KINDS)}")
    ordered = sorted(dict.fromkeys(kinds), key=lambda k: k != "clean")
    chain = generate_chain(config.seed, customers=config.customers, start=config.start)
    say(
        f"chain: seed {config.seed}, {config.customers} customers from {config.start},"
        f" {len(chain.records):,} records"
    )
    decrypt = profile_decrypt()
    results: list[RunResult] = []
    for kind in ordered:
        began = time.monotonic()
        say(f"{kind}: starting")
        result = await run_once(kind, chain.records, config, decrypt=decrypt)
        results.append(result)
        say(
            f"{kind}: done in {time.monotonic() - began:.0f}s"
            + (f" ({result.error})" if result.error else "")
        )
    facts = harness_config_json(config)
    facts["records"] = len(chain.records)
    facts["started"] = datetime.now(UTC).isoformat(timespec="seconds")
    return report_json(facts, results), results


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point: exits 1 when a run failed, did not settle or differs."""
    parser = argparse.ArgumentParser(
        prog="python -m tools.chaos", description=sys.modules["tools.chaos"].__doc__
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--customers", type=int, default=300)
    parser.add_argument(
        "--start",
        type=date.fromisoformat,
        default=None,
        help="the chain's first day (default: 365 days before today, as the demo)",
    )
    parser.add_argument("--runs", default=",".join(RUN_KINDS), help="comma-separated kinds")
    parser.add_argument("--json", dest="json_path", help="write the report here")
    cache = Path(os.environ.get("HUITOU_CACHE", Path.home() / ".cache" / "huitou"))
    parser.add_argument("--state-dir", type=Path, default=cache / "chaos")
    parser.add_argument("--kafka-port", type=int, default=DEFAULT_KAFKA_PORT)
    parser.add_argument("--mongo-port", type=int, default=DEFAULT_MONGO_PORT)
    parser.add_argument("--port-base", type=int, default=DEFAULT_PORT_BASE, help="services' HTTP")
    parser.add_argument("--kills", type=int, default=6, help="SIGKILLs in the kill run")
    parser.add_argument("--outage-seconds", type=float, default=5.0)
    parser.add_argument("--quiet-seconds", type=float, default=8.0)
    parser.add_argument("--job-seconds", type=float, default=5.0, help="every job's period")
    parser.add_argument("--catch-up-timeout", type=float, default=900.0)
    parser.add_argument("--settle-timeout", type=float, default=300.0)
    parser.add_argument(
        "--service-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an extra variable for the services (repeatable)",
    )
    args = parser.parse_args(argv)
    extra = dict(item.split("=", 1) for item in args.service_env)
    config = HarnessConfig(
        state_dir=args.state_dir,
        kafka_port=args.kafka_port,
        mongo_port=args.mongo_port,
        port_base=args.port_base,
        seed=args.seed,
        customers=args.customers,
        start=args.start or (datetime.now(UTC).date() - timedelta(days=365)),
        kills=args.kills,
        outage_seconds=args.outage_seconds,
        quiet_seconds=args.quiet_seconds,
        job_seconds=args.job_seconds,
        catch_up_timeout=args.catch_up_timeout,
        settle_timeout=args.settle_timeout,
        service_env=extra,
    )
    kinds = [k.strip() for k in args.runs.split(",") if k.strip()]
    # Wide tables off a terminal (a CI log, a file) rather than folded into 80 columns.
    console = Console(width=None if sys.stdout.isatty() else 180)
    quiet_logs()
    try:
        report, _ = asyncio.run(run_harness(config, kinds, say=console.print))
    except ValueError as error:
        parser.error(str(error))
    render(report, console)
    if args.json_path:
        write_json(report, args.json_path)
        console.print(f"report written to {args.json_path}")
    bad = [
        r["kind"]
        for r in report["runs"]
        if r["error"]
        or not r["settled"]
        or r["identical_to_clean"] is False
        or any(r["duplicates"].values())
    ]
    raise SystemExit(1 if bad else 0)
