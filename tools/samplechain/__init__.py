"""A deterministic, seeded store chain and a year of its POS and CRM events, for demos and tests.

Command line (see ``python -m tools.samplechain --help``)::

    python -m tools.samplechain --seed 7 --customers 3000 --out chain.jsonl \
        --purchases-csv purchases.csv
"""

from tools.samplechain.export import (
    PURCHASE_CSV_COLUMNS,
    envelope,
    purchase_rows,
    write_jsonl,
    write_purchases_csv,
)
from tools.samplechain.generate import generate_chain
from tools.samplechain.model import Chain, Customer, Record, Store
from tools.samplechain.wire import UNKNOWN_ORDER_NOTE, encode_value

__all__ = [
    "PURCHASE_CSV_COLUMNS",
    "UNKNOWN_ORDER_NOTE",
    "Chain",
    "Customer",
    "Record",
    "Store",
    "encode_value",
    "envelope",
    "generate_chain",
    "purchase_rows",
    "write_jsonl",
    "write_purchases_csv",
]
