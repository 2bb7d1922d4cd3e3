"""Prometheus metrics of one gateway instance (its own registry: several apps may share a process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "GatewayMetrics"]


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "gateway_requests",
            "API requests answered by the gateway, by owning service and status",
            ["service", "status"],
            registry=self.registry,
        )
        self.upstream_latency = Histogram(
            "gateway_upstream_latency_seconds",
            "Time until the upstream service answered (headers received)",
            ["service"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=self.registry,
        )
        self.decision_cache = Counter(
            "gateway_decision_cache",
            "Habilitation decision cache lookups",
            ["result"],
            registry=self.registry,
        )
        self.decision_hits = self.decision_cache.labels("hit")
        self.decision_misses = self.decision_cache.labels("miss")
        self.decisions = Counter(
            "gateway_decisions",
            "Habilitation decisions asked from cercle, by outcome",
            ["outcome"],
            registry=self.registry,
        )
        self.unknown_patient_waits = Counter(
            "gateway_unknown_patient_waits",
            "Decisions on a patient cercle did not know yet, asked again until it did (known) or "
            "until the wait ran out (still_unknown), or refused at once because too many were "
            "waiting (not_waited): a measure of cercle's lag behind dossier",
            ["result"],
            registry=self.registry,
        )
        self.revocations = Counter(
            "gateway_revocation_events", "Revocation events handled", registry=self.registry
        )
        self.audit_dropped = Counter(
            "gateway_audit_dropped",
            "Access records dropped because the queue was full",
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
