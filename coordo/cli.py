"""`coordo` — run the suite and its parts.

coordo run                         embedded mode: everything in one process (default target all)
coordo run --target dossier-web    one component (distributed mode): <service>-web, <service>-worker, gateway, web
coordo distributed                 the whole suite as separate processes on PostgreSQL + RabbitMQ
coordo migrate [--demo]            create/migrate every database (and load demo data)
coordo token coordinateur          an access token for a demo account (embedded / local only)
"""

from __future__ import annotations

import argparse
import os
import sys

from chassis.logs import setup_logging
from chassis.process import freeze_startup_heap
from chassis.settings import SERVICES, Settings


def _migrate(demo: bool) -> None:
    from chassis import migrate as chassis_migrate
    from coordo.registry import all_services
    from gateway.audit import MIGRATIONS_DIR as gateway_migrations

    for definition in all_services():
        settings = definition.settings()
        definition.migrate(settings)
        if demo and definition.demo_data is not None:
            db = definition.database(settings)
            definition.demo_data(settings, db)
            db.dispose()
    chassis_migrate.upgrade(Settings.from_env("gateway").database_url, gateway_migrations)


def _listen_host() -> str:
    # Loopback by default (a laptop); containers set COORDO_LISTEN_HOST=0.0.0.0.
    return os.environ.get("COORDO_LISTEN_HOST") or "127.0.0.1"


def _run_target(target: str) -> None:
    from coordo import embedded

    if target == "all":
        embedded.run(demo=os.environ.get("COORDO_DEMO", "1") == "1", host=_listen_host())
        return
    if target == "web":
        import uvicorn

        from web.app import create_app as create_web_app
        from web.settings import web_port

        uvicorn.run(create_web_app(), host=_listen_host(), port=web_port(), log_config=None)
        return
    if target == "gateway":
        import uvicorn

        from gateway.app import create_gateway

        settings = Settings.from_env("gateway")
        gateway = create_gateway(settings)
        freeze_startup_heap()
        uvicorn.run(gateway, host=_listen_host(), port=settings.port, log_config=None)
        return
    service, _, part = target.rpartition("-")
    if service not in SERVICES or part not in ("web", "worker"):
        raise SystemExit(f"unknown target {target!r}: all, gateway, web, <service>-web or <service>-worker")
    from coordo.registry import service as find

    definition = find(service)
    if part == "worker":
        worker = definition.create_worker()
        worker.declare_topology()
        worker.run_forever()
    else:
        import uvicorn

        settings = definition.settings()
        uvicorn.run(definition.create_process_app(), host=_listen_host(), port=settings.port, log_config=None)


def _distributed(workers: int) -> None:
    import signal
    import threading

    from coordo.distributed import DistributedSuite, local_environment

    suite = DistributedSuite(env=local_environment(), web_workers=workers)
    suite.migrate(demo=True)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    suite.start()
    print("Coordo is running (distributed mode): http://127.0.0.1:8000  —  Ctrl-C to stop", flush=True)
    stop.wait()
    suite.stop()


def _token(username: str, password: str, issuer: str | None) -> None:
    from identity.token_cli import fetch_token

    issuer = issuer or Settings.from_env("gateway").oidc_issuer
    tokens = fetch_token(issuer, username, password)
    print(tokens["access_token"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="coordo", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a target (default: all, the embedded mode)")
    run.add_argument("--target", default="all")
    dist = sub.add_parser(
        "distributed", help="run every component as its own process (PostgreSQL + RabbitMQ)"
    )
    dist.add_argument("--workers", type=int, default=1, help="gunicorn workers per web process")
    mig = sub.add_parser("migrate", help="create and migrate every database")
    mig.add_argument("--demo", action="store_true", help="also load the demo data")
    tok = sub.add_parser("token", help="print an access token for a demo account")
    tok.add_argument("username")
    tok.add_argument("--password", default="coordo-demo")
    tok.add_argument("--issuer", default=None)
    args = parser.parse_args(argv)
    setup_logging()
    if args.command == "run":
        _run_target(args.target)
    elif args.command == "distributed":
        _distributed(args.workers)
    elif args.command == "migrate":
        _migrate(args.demo)
    elif args.command == "token":
        _token(args.username, args.password, args.issuer)


if __name__ == "__main__":
    main(sys.argv[1:])
