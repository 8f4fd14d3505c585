"""Loyalty rules as data, with the domain's defaults; validated when the service starts."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class PolicyError(SystemExit):
    """A bad policy file: stops start-up with a message naming the bad field."""


class LoyaltyPolicy(BaseModel):
    """How points are earned (more rules arrive with the full loyalty service)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    points_per_currency_unit: Decimal = Field(Decimal(1), gt=0)
    rounding: Literal["down", "half_up"] = "down"


def load_policy(path: Path | None) -> LoyaltyPolicy:
    """The policy from a JSON file, or the defaults when no file is given."""
    if path is None:
        return LoyaltyPolicy()
    try:
        return LoyaltyPolicy.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, json.JSONDecodeError) as error:
        raise PolicyError(f"loyalty policy {path}: {error}") from None
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()
        )
        raise PolicyError(f"loyalty policy {path}: {problems}") from None
