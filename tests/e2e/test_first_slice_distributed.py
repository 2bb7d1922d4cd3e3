"""The first slice end to end in distributed mode: gunicorn per service, a worker process
per service, the gateway, PostgreSQL and RabbitMQ — real processes, real tokens."""

from __future__ import annotations

from typing import Any

from tests.e2e.scenario import first_slice


def test_first_slice_in_distributed_mode(distributed_suite: Any, smtp_server: Any) -> None:
    figures = first_slice(distributed_suite, smtp_server)
    print(f"distributed: revocation took {figures['revocation_s'] * 1000:.0f} ms")
