"""Benchmark: `GET /api/patients/{id}` through the gateway versus the dossier service
called directly — distributed mode (gunicorn + uvicorn workers, PostgreSQL, RabbitMQ),
same worker counts, load from wrk on loopback — and the dossier service versus raw Flask
(gunicorn sync workers, same count): the same route with no work, and with the same use
case on the same database (`tests/bench/floors.py`).

    .venv/bin/python -m tests.bench.gateway_vs_direct [--workers 1] [--seconds 10] [--connections 32]

Needs `wrk` (Debian package `wrk`). Prints requests/s and p50/p99 under load, and p50 with
one connection (the latency the gateway adds when the machine is not loaded).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from tests.bench.distributed_suite import distributed_suite
from tests.support.suite import free_port_block

PATIENT = {
    "birth_name": "Martin",
    "first_name": "Louise",
    "birth_date": "1941-07-09",
    "sex": "F",
    "birth_place": "91228",
    "consent": {"attested": True, "given_by": "patient"},
}
UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk(url: str, token: str, seconds: int, connections: int, threads: int = 1) -> dict[str, float]:
    script = Path(tempfile.mkdtemp()) / "auth.lua"
    script.write_text(f'wrk.headers["Authorization"] = "Bearer {token}"\n')
    out = subprocess.run(
        [
            "wrk",
            "-t",
            str(threads),
            "-c",
            str(connections),
            "-d",
            f"{seconds}s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    figures: dict[str, float] = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}  # type: ignore[union-attr]
    for pct in ("50", "99"):
        match = re.search(rf"\s{pct}%\s+([\d.]+)(us|ms|s)", out)
        figures[f"p{pct}"] = float(match.group(1)) * UNITS[match.group(2)] if match else float("nan")
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    figures["errors"] = float(non2xx.group(1)) if non2xx else 0.0
    return figures


def floor(
    factory: str, path: str, token: str, args: argparse.Namespace, database_url: str, asgi: bool = False
) -> dict[str, float]:
    """The same route on a floor app (tests/bench/floors.py) under gunicorn: sync workers for
    raw Flask, the uvicorn worker for an ASGI app."""
    port = free_port_block(1)
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "COORDO_FLOOR_DATABASE_URL": database_url, "PYTHONPATH": str(root)}
    gunicorn = Path(sys.executable).parent / "gunicorn"
    command = [str(gunicorn), "-w", str(args.workers), "-b", f"127.0.0.1:{port}", "--log-level", "warning"]
    if asgi:
        command += ["-k", "uvicorn_worker.UvicornWorker"]
    process = subprocess.Popen([*command, f"tests.bench.floors:{factory}()"], env=env, cwd=root)
    try:
        url = f"http://127.0.0.1:{port}{path}"
        for _ in range(100):
            try:
                if httpx.get(url).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        wrk(url, token, 2, args.connections)  # warm-up
        return wrk(url, token, args.seconds, args.connections)
    finally:
        process.terminate()
        process.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--workers", type=int, default=1, help="gunicorn workers per web process (same for both)"
    )
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt-get install wrk")

    with distributed_suite(args.workers) as suite:
        gateway, dossier = suite.gateway, suite.dossier
        token = suite.token()
        headers = {"Authorization": f"Bearer {token}"}
        patient_id = httpx.post(f"{gateway}/api/patients", json=PATIENT, headers=headers).json()["id"]
        for _ in range(200):
            if httpx.get(f"{gateway}/api/patients/{patient_id}", headers=headers).status_code == 200:
                break
        path = f"/api/patients/{patient_id}"
        for url in (f"{dossier}{path}", f"{gateway}{path}"):
            wrk(url, token, 2, args.connections)  # warm-up
        direct = wrk(f"{dossier}{path}", token, args.seconds, args.connections)
        through = wrk(f"{gateway}{path}", token, args.seconds, args.connections)
        direct_1 = wrk(f"{dossier}{path}", token, args.seconds, 1)
        through_1 = wrk(f"{gateway}{path}", token, args.seconds, 1)
        database_url = suite.env["COORDO_DOSSIER_DATABASE_URL"]
        floors = {
            name: floor(factory, path, token, args, database_url)
            for name, factory in (("hello", "hello_app"), ("same work", "same_work_app"))
        }
        connexion_hello = floor("connexion_hello_app", path, token, args, database_url, asgi=True)

    print("Coordo gateway benchmark — distributed mode on this machine")
    print(
        f"reproduce: .venv/bin/python -m tests.bench.gateway_vs_direct --workers {args.workers} "
        f"--seconds {args.seconds} --connections {args.connections}"
    )
    print(
        f"GET {path} with {args.connections} connections, {args.workers} gunicorn worker(s) per web process:"
    )
    print(
        f"  direct (dossier):  {direct['rps']:8.0f} req/s  p50 {direct['p50']:.2f} ms  p99 {direct['p99']:.2f} ms  non-2xx {direct['errors']:.0f}"
    )
    print(
        f"  through gateway:   {through['rps']:8.0f} req/s  p50 {through['p50']:.2f} ms  p99 {through['p99']:.2f} ms  non-2xx {through['errors']:.0f}"
    )
    print(
        f"  ratio gateway/direct: {through['rps'] / direct['rps']:.2f}x (target ≥ 0.5x; naive gateway floor 0.11-0.16x)"
    )
    for name, figures in floors.items():
        print(
            f"  raw Flask, {name + ':':11s}{figures['rps']:8.0f} req/s  p50 {figures['p50']:.2f} ms  p99 {figures['p99']:.2f} ms  non-2xx {figures['errors']:.0f}"
            f"  -> dossier (connexion) reaches {direct['rps'] / figures['rps']:.2f}x (target ≥ 0.5x)"
        )
    print("  (the issue's raw Flask floor: 5,259 req/s for a route with no work)")
    hello = floors["hello"]
    print(
        f"  connexion alone, no work (AsyncApp, request+response validation, uvicorn worker): {connexion_hello['rps']:.0f} req/s  "
        f"p50 {connexion_hello['p50']:.2f} ms  p99 {connexion_hello['p99']:.2f} ms  non-2xx {connexion_hello['errors']:.0f}"
        f"  -> {connexion_hello['rps'] / hello['rps']:.2f}x raw Flask no work (target ≥ 0.5x; the issue's connexion 3 floor: 0.41x)"
    )
    print(
        f"unloaded (1 connection): direct p50 {direct_1['p50']:.2f} ms, gateway p50 {through_1['p50']:.2f} ms, "
        f"added {through_1['p50'] - direct_1['p50']:.2f} ms (target ≤ 1 ms; naive gateway added 2.5 ms)"
    )


if __name__ == "__main__":
    main()
