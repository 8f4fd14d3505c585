"""Settings every service shares, read from HUITOU_* environment variables."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal, Self, TypeVar
from urllib.parse import urlparse

from pydantic import (
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.contracts.values import ExchangeRates

Environment = Literal["development", "production"]

# Published in this repository, so anyone can sign a token with it: refused in production.
DEVELOPMENT_AUTH_SECRET = "huitou-local-development-secret-change-me"
MIN_SECRET_CHARACTERS = 32
MIN_SECRET_DISTINCT_CHARACTERS = 12


class SettingsError(SystemExit):
    """Invalid configuration: stops start-up with a message naming the bad variable."""


def weak_secret_reason(secret: str) -> str | None:
    """Why a shared token secret is too weak for production, or None when it is strong enough.

    Strong: not the published development secret, at least 32 characters (RFC 7518 wants
    an HS256 key of 256 bits or more), at least 12 distinct characters, and not a shorter
    pattern repeated ("abcd" * 8). Random base64 or hex secrets pass; words and patterns fail.
    """
    if secret == DEVELOPMENT_AUTH_SECRET:
        return "is the published development secret"
    if len(secret) < MIN_SECRET_CHARACTERS:
        return f"is shorter than {MIN_SECRET_CHARACTERS} characters"
    if len(set(secret)) < MIN_SECRET_DISTINCT_CHARACTERS:
        return f"has fewer than {MIN_SECRET_DISTINCT_CHARACTERS} distinct characters"
    # A string is a repetition of a shorter unit exactly when it occurs inside itself doubled
    # with the first and last character removed.
    if secret in (secret + secret)[1:-1]:
        return "repeats a shorter pattern"
    return None


class ServiceSettings(BaseSettings):
    """Connection and runtime settings common to all services."""

    model_config = SettingsConfigDict(env_prefix="HUITOU_", extra="ignore", frozen=True)

    # development: the demo, tests and `./huitou up`; production: start-up stops on the
    # published development secret or keys, or a weak secret (production_problems).
    env: Environment = "development"
    kafka_bootstrap: str = "127.0.0.1:9092"
    mongo_uri: str = "mongodb://127.0.0.1:27017"
    # Prepended to every topic name and consumer group: lets tests and demos
    # share one broker without seeing each other's messages.
    topic_prefix: str = ""
    # The consumer group; by default `<prefix>huitou-<service>`. Another group re-reads the
    # same topics from the start (a second deployment, a benchmark of one service alone).
    consumer_group: str | None = None
    http_host: str = "127.0.0.1"
    http_port: int = Field(8000, ge=0, le=65535)  # 0: any free port
    # A request body larger than this is answered 413 before a route reads it.
    http_max_body_bytes: int = Field(1_048_576, ge=1)
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    consumer_max_records: int = Field(500, ge=1, le=10_000)
    consumer_batch_timeout_ms: int = Field(200, ge=1)
    # Documents a consumer keeps in memory between batches of its own partitions (per
    # cache; 0: none). See shared/caching.py.
    consumer_cache_documents: int = Field(0, ge=0)
    retry_initial_seconds: float = Field(0.2, gt=0)
    retry_max_seconds: float = Field(10.0, gt=0)
    # SIGTERM to exit: consumers stop retrying at once; this bounds the rest of the shutdown.
    shutdown_seconds: float = Field(20.0, gt=0)
    # The chain's one reporting currency, and units of it per unit of each other accepted
    # currency (a JSON object of decimal strings: {"HKD": "0.92"}). The same in every service.
    reporting_currency: str = Field("CNY", pattern=r"^[A-Z]{3}$")
    exchange_rates: dict[str, Decimal] = Field(default_factory=dict)

    @field_validator("exchange_rates")
    @classmethod
    def _rates_hold(cls, rates: dict[str, Decimal], info: ValidationInfo) -> dict[str, Decimal]:
        ExchangeRates.of(info.data.get("reporting_currency", "CNY"), rates)
        return rates

    @model_validator(mode="after")
    def _safe_for_production(self) -> Self:
        if self.env == "production":
            problems = self.production_problems()
            if problems:
                raise ValueError("refused with HUITOU_ENV=production: " + "; ".join(problems))
        return self

    def production_problems(self) -> list[str]:
        """What makes these settings unsafe in production, each naming the variable to set."""
        return []

    def exchange(self) -> ExchangeRates:
        """The chain's exchange rates into its reporting currency."""
        return ExchangeRates.of(self.reporting_currency, self.exchange_rates)

    def topic(self, name: str) -> str:
        """The physical topic name for a contract topic name."""
        return f"{self.topic_prefix}{name}"

    def group(self, service: str) -> str:
        """The consumer group of a service's instances."""
        return self.consumer_group or f"{self.topic_prefix}huitou-{service}"


SettingsT = TypeVar("SettingsT", bound=ServiceSettings)


def _variable_name(prefix: str, location: tuple[int | str, ...]) -> str:
    name = ".".join(str(p) for p in location).upper()
    # Fields with an alias (HUITOU_LOYALTY_DATABASE) report the full variable name already.
    return name if name.startswith(prefix.upper()) else prefix.upper() + name


def _problem(prefix: str, error: ErrorDetails) -> str:
    # A check across fields (production_problems) has no location; its message names them.
    if not error["loc"]:
        return error["msg"].removeprefix("Value error, ")
    return f"{_variable_name(prefix, error['loc'])}: {error['msg']}"


def load_settings(settings_class: type[SettingsT]) -> SettingsT:
    """Read and validate settings, or stop with a message naming each bad variable."""
    try:
        return settings_class()
    except ValidationError as error:
        prefix = str(settings_class.model_config.get("env_prefix", ""))
        problems = "; ".join(_problem(prefix, e) for e in error.errors())
        raise SettingsError(f"invalid settings for {settings_class.__name__}: {problems}") from None


class AuthSettings(ServiceSettings):
    """Settings of a service with an authenticated HTTP API (see shared/auth.py).

    Without ``auth_jwks_url`` tokens are HS256, signed with ``auth_secret`` (local use,
    ``python -m tools.token``); with it, RS256/ES256 tokens of the chain's identity provider,
    verified with the keys it publishes, and HS256 tokens are refused.
    """

    # Shared HS256 secret; the default is for local use only and is refused in production.
    auth_secret: str = Field(DEVELOPMENT_AUTH_SECRET, min_length=MIN_SECRET_CHARACTERS)
    auth_jwks_url: str | None = None
    # Checked when set ("iss" and "aud" claims); both required with a JWKS URL in production.
    auth_issuer: str | None = Field(None, min_length=1)
    auth_audience: str | None = Field(None, min_length=1)
    # The claims that carry the caller's role, stores and departments.
    auth_role_claim: str = Field("role", min_length=1)
    auth_stores_claim: str = Field("stores", min_length=1)
    auth_departments_claim: str = Field("departments", min_length=1)
    # How long fetched signing keys are trusted, and the shortest time between two fetches
    # caused by tokens naming a key not in the set (a rotation; bounds forged-kid floods).
    auth_jwks_cache_seconds: float = Field(300.0, gt=0)
    auth_jwks_refetch_seconds: float = Field(30.0, ge=0)

    @field_validator("auth_jwks_url")
    @classmethod
    def _jwks_url_is_http(cls, url: str | None) -> str | None:
        if url is not None:
            parsed = urlparse(url)
            if parsed.scheme not in ("http", "https") or not parsed.netloc:
                raise ValueError("must be an http:// or https:// URL")
        return url

    def production_problems(self) -> list[str]:
        """The service-wide problems, plus a weak secret or an unchecked identity provider."""
        problems = super().production_problems()
        if self.auth_jwks_url is None:
            reason = weak_secret_reason(self.auth_secret)
            if reason is not None:
                problems.append(
                    f"HUITOU_AUTH_SECRET {reason}: set a random secret of at least "
                    f"{MIN_SECRET_CHARACTERS} characters (openssl rand -base64 48), or "
                    "HUITOU_AUTH_JWKS_URL to verify your identity provider's tokens"
                )
            return problems
        if urlparse(self.auth_jwks_url).scheme != "https":
            problems.append("HUITOU_AUTH_JWKS_URL must be an https:// URL")
        if self.auth_issuer is None:
            problems.append("HUITOU_AUTH_ISSUER must name your identity provider (the iss)")
        if self.auth_audience is None:
            problems.append("HUITOU_AUTH_AUDIENCE must name this system (the tokens' aud)")
        return problems
