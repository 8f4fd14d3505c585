"""Rules as data: loading a service's policy file, with errors that name the bad field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, TypeVar

from pydantic import BaseModel, PlainValidator, ValidationError

from shared.contracts.values import ExchangeRates

PolicyT = TypeVar("PolicyT", bound=BaseModel)


def _given_by_the_service(value: object) -> ExchangeRates:
    if isinstance(value, ExchangeRates):
        return value
    raise ValueError(
        "exchange rates are the chain's, not a service's: set HUITOU_REPORTING_CURRENCY and "
        "HUITOU_EXCHANGE_RATES"
    )


Rates = Annotated[ExchangeRates, PlainValidator(_given_by_the_service)]
"""A policy's exchange rates: put there by the service from its settings, never from a file."""


def with_rates(policy: PolicyT, rates: ExchangeRates) -> PolicyT:
    """The policy with the chain's exchange rates (``ServiceSettings.exchange()``)."""
    return policy.model_copy(update={"rates": rates})


class PolicyError(SystemExit):
    """A bad policy: stops start-up with a message naming the bad field."""


def describe_validation_error(error: ValidationError) -> str:
    """Every problem of a validation error as `dotted.path: message`, joined by '; '."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in error.errors()
    )


def load_policy_file(model: type[PolicyT], path: Path | None, *, service: str) -> PolicyT:
    """The policy in a JSON file, or the model's defaults when no file is given."""
    if path is None:
        return model()
    try:
        return model.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, json.JSONDecodeError) as error:
        raise PolicyError(f"{service} policy {path}: {error}") from None
    except ValidationError as error:
        raise PolicyError(f"{service} policy {path}: {describe_validation_error(error)}") from None
