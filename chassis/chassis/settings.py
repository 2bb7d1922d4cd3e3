"""Settings read from the environment only (twelve-factor), one object per service."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

# Embedded defaults: everything on loopback, one SQLite file per service under ./var/.
DEFAULT_PORTS = {
    "gateway": 8000,
    "identity": 8101,
    "dossier": 8102,
    "cercle": 8103,
    "taches": 8104,
    "documents": 8105,
    "agenda": 8106,
    "notify": 8107,
}
SERVICES = ("identity", "dossier", "cercle", "taches", "documents", "agenda", "notify")


def env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def var_dir() -> Path:
    path = Path(env("COORDO_VAR_DIR", str(Path.cwd() / "var")) or "var")
    path.mkdir(parents=True, exist_ok=True)
    return path


def contracts_dir() -> Path:
    return Path(env("COORDO_CONTRACTS_DIR", str(REPO_ROOT / "contracts")) or "contracts")


def service_url(service: str) -> str:
    """Where a service's HTTP API answers (used by the gateway and service clients)."""
    port = env(f"COORDO_{service.upper()}_PORT", str(DEFAULT_PORTS[service]))
    default = f"http://127.0.0.1:{port}"
    return (env(f"COORDO_{service.upper()}_URL", default) or default).rstrip("/")


@dataclass(frozen=True)
class Settings:
    service: str
    database_url: str
    broker_url: str
    oidc_issuer: str
    oidc_audience: str
    public_url: str
    port: int
    validate_responses: bool

    @classmethod
    def from_env(cls, service: str) -> Settings:
        upper = service.upper()
        gateway_port = env("COORDO_GATEWAY_PORT", str(DEFAULT_PORTS["gateway"]))
        public_url = env("COORDO_PUBLIC_URL", f"http://127.0.0.1:{gateway_port}") or ""
        database_url = env(f"COORDO_{upper}_DATABASE_URL") or f"sqlite:///{var_dir() / (service + '.db')}"
        return cls(
            service=service,
            database_url=database_url,
            broker_url=env("COORDO_BROKER_URL", "memory://") or "memory://",
            # The built-in provider answers behind the gateway under /oidc.
            oidc_issuer=(env("COORDO_OIDC_ISSUER") or f"{public_url.rstrip('/')}/oidc").rstrip("/"),
            oidc_audience=env("COORDO_OIDC_AUDIENCE", "coordo") or "coordo",
            public_url=public_url.rstrip("/"),
            port=int(env(f"COORDO_{upper}_PORT", str(DEFAULT_PORTS.get(service, 8000))) or 0),
            # Response validation costs throughput; tests turn it on.
            validate_responses=(env("COORDO_VALIDATE_RESPONSES", "0") == "1"),
        )

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")
