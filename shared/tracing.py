"""OpenTelemetry tracing of a service, configured from the standard ``OTEL_*`` variables.

Tracing is on only when something says where spans go: ``OTEL_TRACES_EXPORTER`` set to
``otlp`` or ``console``, or an OTLP endpoint (``OTEL_EXPORTER_OTLP_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) with no exporter named. Otherwise (and with
``OTEL_SDK_DISABLED=true`` or ``OTEL_TRACES_EXPORTER=none``) the service gets no tracer
provider at all, and the messaging code skips its span work. The SDK reads the rest itself:
``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER(_ARG)``, the
``OTEL_BSP_*`` batching limits, ``OTEL_SPAN_LINK_COUNT_LIMIT``, the OTLP headers, timeout and
compression. OTLP goes over HTTP/protobuf, the only protocol installed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.trace import Tracer

INSTRUMENTATION = "huitou"
EXPORTERS = ("otlp", "console")


class TracingConfigError(ValueError):
    """The ``OTEL_*`` variables ask for something this build cannot do."""


@dataclass(frozen=True)
class TracingChoice:
    """What the environment asks for: which exporter, or none (tracing off)."""

    exporter: str | None


def tracing_choice(env: Mapping[str, str]) -> TracingChoice:
    """Read the standard variables into an exporter name, or None when tracing is off."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return TracingChoice(None)
    named = [e.strip().lower() for e in env.get("OTEL_TRACES_EXPORTER", "").split(",")]
    named = [e for e in named if e]
    if "none" in named:
        return TracingChoice(None)
    if not named:
        endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get(
            "OTEL_EXPORTER_OTLP_ENDPOINT"
        )
        return TracingChoice("otlp" if endpoint else None)
    unknown = [e for e in named if e not in EXPORTERS]
    if unknown or len(named) > 1:
        raise TracingConfigError(
            f"OTEL_TRACES_EXPORTER={env['OTEL_TRACES_EXPORTER']!r}: one of otlp, console, none"
        )
    protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
    )
    if named[0] == "otlp" and protocol != "http/protobuf":
        raise TracingConfigError(f"OTLP protocol {protocol!r}: only http/protobuf is installed")
    return TracingChoice(named[0])


def tracer_provider(service: str, env: Mapping[str, str]) -> TracerProvider | None:
    """The service's tracer provider as the environment configures it; None when off.

    ``OTEL_SERVICE_NAME`` wins over the default name ``huitou-<service>``.
    """
    choice = tracing_choice(env)
    if choice.exporter is None:
        return None
    resource = Resource.create({SERVICE_NAME: f"huitou-{service}"})
    if env.get("OTEL_SERVICE_NAME"):
        resource = resource.merge(Resource({SERVICE_NAME: env["OTEL_SERVICE_NAME"]}))
    provider = TracerProvider(resource=resource)
    if choice.exporter == "console":
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    else:
        provider.add_span_processor(BatchSpanProcessor(_otlp_exporter()))
    return provider


def _otlp_exporter() -> SpanExporter:
    # Imported here: the exporter pulls in protobuf and requests, which only tracing needs.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def tracer_of(provider: TracerProvider | None) -> Tracer | None:
    """The tracer Huitou's code records with, or None when tracing is off."""
    return None if provider is None else provider.get_tracer(INSTRUMENTATION)
