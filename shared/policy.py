"""Rules as data: loading a service's policy file, with errors that name the bad field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

PolicyT = TypeVar("PolicyT", bound=BaseModel)


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
