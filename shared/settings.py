"""Settings every service shares, read from HUITOU_* environment variables."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal, TypeVar

from pydantic import Field, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.contracts.values import ExchangeRates


class SettingsError(SystemExit):
    """Invalid configuration: stops start-up with a message naming the bad variable."""


class ServiceSettings(BaseSettings):
    """Connection and runtime settings common to all services."""

    model_config = SettingsConfigDict(env_prefix="HUITOU_", extra="ignore", frozen=True)

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
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    consumer_max_records: int = Field(500, ge=1, le=10_000)
    consumer_batch_timeout_ms: int = Field(200, ge=1)
    # Documents a consumer keeps in memory between batches of its own partitions (per
    # cache; 0: none). See shared/caching.py.
    consumer_cache_documents: int = Field(50_000, ge=0)
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


def load_settings(settings_class: type[SettingsT]) -> SettingsT:
    """Read and validate settings, or stop with a message naming each bad variable."""
    try:
        return settings_class()
    except ValidationError as error:
        prefix = str(settings_class.model_config.get("env_prefix", ""))
        problems = "; ".join(
            f"{_variable_name(prefix, e['loc'])}: {e['msg']}" for e in error.errors()
        )
        raise SettingsError(f"invalid settings for {settings_class.__name__}: {problems}") from None


class AuthSettings(ServiceSettings):
    """Settings of a service with an authenticated HTTP API."""

    # Shared HS256 secret; the default is for local use only and is refused in production.
    auth_secret: str = Field("huitou-local-development-secret-change-me", min_length=32)
