"""The web front end's settings, read from the environment only (like every service)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from chassis.settings import DEFAULT_PORTS, env, var_dir

DEFAULT_WEB_PORT = 8108
CLIENT_ID = "coordo-web"


def web_port(environ: Mapping[str, str] | None = None) -> int:
    """COORDO_WEB_PORT, else the gateway's port + 108 (8108 by default): a suite started on
    other ports for tests gets a web port of its own without more settings."""
    source = os.environ if environ is None else environ
    if source.get("COORDO_WEB_PORT"):
        return int(source["COORDO_WEB_PORT"])
    gateway = int(source.get("COORDO_GATEWAY_PORT") or DEFAULT_PORTS["gateway"])
    return gateway + (DEFAULT_WEB_PORT - DEFAULT_PORTS["gateway"])


def web_url(environ: Mapping[str, str] | None = None) -> str:
    """Where the web app answers (the gateway forwards browser paths there)."""
    source = os.environ if environ is None else environ
    return (source.get("COORDO_WEB_URL") or f"http://127.0.0.1:{web_port(source)}").rstrip("/")


@dataclass(frozen=True)
class WebSettings:
    port: int
    #: The address people type: the gateway (OIDC redirect URIs are registered against it).
    public_url: str
    #: Where this process reaches the gateway itself (/api and /oidc), server to server.
    gateway_url: str
    #: The issuer as the browser sees it (the authorization endpoint is a browser redirect).
    issuer: str
    #: Embedded mode only: the login page lists the demo accounts.
    show_demo_accounts: bool
    session_dir: Path
    secret_key: str
    secure_cookies: bool

    @classmethod
    def from_env(cls) -> WebSettings:
        gateway_port = env("COORDO_GATEWAY_PORT", str(DEFAULT_PORTS["gateway"]))
        public_url = (env("COORDO_PUBLIC_URL") or f"http://127.0.0.1:{gateway_port}").rstrip("/")
        gateway_url = (env("COORDO_WEB_GATEWAY_URL") or f"http://127.0.0.1:{gateway_port}").rstrip("/")
        issuer = (env("COORDO_OIDC_ISSUER") or f"{public_url}/oidc").rstrip("/")
        session_dir = Path(env("COORDO_WEB_SESSION_DIR") or str(var_dir() / "web-sessions"))
        return cls(
            port=web_port(),
            public_url=public_url,
            gateway_url=gateway_url,
            issuer=issuer,
            show_demo_accounts=env("COORDO_WEB_DEMO_ACCOUNTS", "0") == "1",
            session_dir=session_dir,
            # Signs the session id and the CSRF tokens; a random one per process is fine for a
            # single process (embedded) but several processes must share one.
            secret_key=env("COORDO_WEB_SECRET_KEY") or secrets.token_urlsafe(32),
            secure_cookies=public_url.startswith("https://"),
        )

    @property
    def redirect_uri(self) -> str:
        return f"{self.public_url}/auth/callback"
