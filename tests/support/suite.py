"""Environment for running the whole suite in tests on its own ports, databases and state."""

from __future__ import annotations

import random
import socket

from chassis.settings import SERVICES


def free_port_block(size: int = 8) -> int:
    """A base port such that base..base+size-1 are free now (best effort, loopback only).

    Below the kernel's ephemeral range (32768+ here): a port there may be taken at any moment
    by an outgoing connection (PostgreSQL, RabbitMQ, HTTP clients), and a server then fails
    to bind it. Each port is tried by binding it, which also sees ports held by connections.
    """
    # A random start: two suites in one test process never share an issuer URL (their
    # identity services have different signing keys, and verifiers cache keys per issuer).
    low, high = 20000, 32000
    start = random.randrange(low, high)
    for base in [*range(start, high, 37), *range(low, start, 37)]:
        if all(_bindable(base + offset) for offset in range(size)):
            return base
    raise RuntimeError("no free block of ports on loopback")


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def suite_environment(base_port: int, var_dir: str) -> dict[str, str]:
    env = {
        "COORDO_VAR_DIR": var_dir,
        "COORDO_GATEWAY_PORT": str(base_port),
        "COORDO_PUBLIC_URL": f"http://127.0.0.1:{base_port}",
        "COORDO_VALIDATE_RESPONSES": "1",
        # The demo accounts, without the thousand demo patients: tests create what they read.
        "COORDO_DEMO_PATIENTS": "0",
    }
    for offset, name in enumerate(SERVICES, start=1):
        env[f"COORDO_{name.upper()}_PORT"] = str(base_port + offset)
    return env
