"""OpenTelemetry per service: one TracerProvider per service so that, even when every
service runs in one process (embedded mode), each span carries its own `service.name`.

kombu has no OpenTelemetry instrumentation: `inject_headers` / `extracted_context` carry
W3C trace context in AMQP message headers, both ways.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

_providers: dict[str, TracerProvider] = {}
_extra_processors: list[SpanProcessor] = []
_lock = threading.Lock()


def enabled() -> bool:
    """OpenTelemetry's own switch: OTEL_SDK_DISABLED=true leaves the web stack uninstrumented."""
    return os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() != "true"


def add_span_processor(processor: SpanProcessor) -> None:
    """Attach a processor (e.g. an in-memory exporter in tests) to every provider, now and later."""
    with _lock:
        _extra_processors.append(processor)
        for provider in _providers.values():
            provider.add_span_processor(processor)


def tracer_provider(service: str) -> TracerProvider:
    name = f"coordo-{service}"
    with _lock:
        provider = _providers.get(name)
        if provider is None:
            provider = TracerProvider(resource=Resource.create({"service.name": name}))
            if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get(
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
            ):
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                    OTLPSpanExporter,
                )

                provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
            for processor in _extra_processors:
                provider.add_span_processor(processor)
            _providers[name] = provider
        return provider


def tracer(service: str) -> trace.Tracer:
    return tracer_provider(service).get_tracer("coordo.chassis")


def inject_headers(
    headers: dict[str, Any] | None = None, context: otel_context.Context | None = None
) -> dict[str, Any]:
    """Put the current (or the given) trace context into AMQP headers."""
    headers = dict(headers or {})
    propagate.inject(headers, context=context)
    return headers


def extracted_context(headers: Mapping[str, Any] | None) -> otel_context.Context:
    carrier = {k: str(v) for k, v in (headers or {}).items() if isinstance(v, (str, bytes))}
    return propagate.extract(carrier)


def shutdown() -> None:
    with _lock:
        for provider in _providers.values():
            provider.shutdown()
        _providers.clear()
