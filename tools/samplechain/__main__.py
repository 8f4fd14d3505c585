"""Command line: generate a chain, write it as JSON lines (and CSV), print a summary."""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from datetime import date
from pathlib import Path

from rich.console import Console
from rich.table import Table

from tools.samplechain.export import write_jsonl, write_purchases_csv
from tools.samplechain.generate import generate_chain
from tools.samplechain.wire import UNKNOWN_ORDER_NOTE


def main(argv: Sequence[str] | None = None) -> None:
    """Generate, write and summarise a chain."""
    parser = argparse.ArgumentParser(
        prog="python -m tools.samplechain",
        description="Generate a seeded store chain and a year of its events.",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--customers", type=int, default=3000)
    parser.add_argument("--stores", type=int, default=36)
    parser.add_argument("--start", type=date.fromisoformat, default=date(2025, 11, 1))
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--malformed-share", type=float, default=0.005)
    parser.add_argument("--out", type=Path, default=Path("chain.jsonl"), help="JSON-lines output")
    parser.add_argument(
        "--purchases-csv", type=Path, help="also write purchases as a POS CSV export"
    )
    args = parser.parse_args(argv)

    began = time.perf_counter()
    chain = generate_chain(
        args.seed,
        stores=args.stores,
        customers=args.customers,
        start=args.start,
        days=args.days,
        malformed_share=args.malformed_share,
    )
    generated = time.perf_counter() - began
    write_jsonl(chain, args.out)
    purchases = write_purchases_csv(chain, args.purchases_csv) if args.purchases_csv else None

    table = Table(
        title=f"chain seed {chain.seed}: "
        f"{len(chain.stores)} stores, {len(chain.customers)} customers"
    )
    table.add_column("topic")
    table.add_column("records", justify="right")
    table.add_column("malformed", justify="right")
    table.add_column("rule-breaking", justify="right")
    for topic, count in chain.records_per_topic().items():
        malformed = sum(1 for r in chain.records if r.topic == topic and not r.valid)
        breaking = sum(
            1 for r in chain.records if r.topic == topic and r.note == UNKNOWN_ORDER_NOTE
        )
        table.add_row(topic, str(count), str(malformed), str(breaking))
    table.add_row(
        "total", str(len(chain.records)), str(len(chain.malformed())), "", end_section=True
    )
    console = Console()
    console.print(table)
    console.print(f"generated in {generated:.2f} s; wrote {args.out}")
    if purchases is not None:
        console.print(f"wrote {purchases} purchases to {args.purchases_csv}")


if __name__ == "__main__":
    main()
