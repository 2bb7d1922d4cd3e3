"""Settings of a long-running process (a gunicorn worker, a service worker, the embedded suite)."""

from __future__ import annotations

import gc

__all__ = ["freeze_startup_heap"]


def freeze_startup_heap() -> None:
    """Put what start-up allocated (modules, contracts, ORM mappers, metadata) out of the
    garbage collector's sight, once the process is ready to serve.

    CPython's full collections walk every tracked object; in a consumer that heap made one
    collection last ~100 ms, a pause every event waiting in that process paid
    (tests/bench/README.md, event latency). Objects allocated later are collected as usual.
    Only for processes that serve until they stop: a test suite that builds many apps
    must not call it (what it freezes is never freed).
    """
    gc.collect()
    gc.freeze()
