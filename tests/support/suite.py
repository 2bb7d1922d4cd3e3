"""Environment for running the whole suite in tests on its own ports, databases and state."""

from __future__ import annotations

import random
import socket

from chassis.settings import SERVICES


def free_port_block(size: int = 8) -> int:
    """A base port such that base..base+size-1 are free now (best effort, loopback only)."""
    # A random start: two suites in one test process never share an issuer URL (their
    # identity services have different signing keys, and verifiers cache keys per issuer).
    start = random.randrange(20000, 50000)
    for base in range(start, 60000, 37):
        ok = True
        for offset in range(size):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                if probe.connect_ex(("127.0.0.1", base + offset)) == 0:
                    ok = False
                    break
        if ok:
            return base
    raise RuntimeError("no free block of ports on loopback")


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
