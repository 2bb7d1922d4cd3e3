"""The first slice end to end in embedded mode (one process, SQLite, memory transport)."""

from __future__ import annotations

from typing import Any

from tests.e2e.scenario import first_slice


def test_first_slice_in_embedded_mode(embedded_suite: Any, smtp_server: Any) -> None:
    figures = first_slice(embedded_suite, smtp_server)
    print(f"embedded: revocation took {figures['revocation_s'] * 1000:.0f} ms")
