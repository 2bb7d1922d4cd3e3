"""Calls to the gateway's /api on behalf of the logged-in person (the web talks to nothing else)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import flask
import httpx

from web.oidc import LoginRequired, OidcClient, needs_refresh
from web.settings import WebSettings


@dataclass
class ApiResponse:
    status: int
    body: Any
    headers: httpx.Headers

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def problem(self) -> dict[str, Any]:
        return self.body if isinstance(self.body, dict) else {}


class ApiUnavailable(Exception):
    """The gateway did not answer: the page says so instead of failing blank."""


class Gateway:
    """One pooled HTTP client to the gateway, created on first use (nothing at import time)."""

    def __init__(self, settings: WebSettings, oidc: OidcClient) -> None:
        self.settings = settings
        self.oidc = oidc
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()

    def client(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(base_url=self.settings.gateway_url, timeout=20, trust_env=False)
            return self._client

    def _access_token(self) -> str:
        session = flask.session
        tokens = session.get("tokens")
        if not tokens:
            raise LoginRequired()
        if needs_refresh(tokens):
            tokens = self.oidc.refresh(tokens)
            session["tokens"] = tokens
        return str(tokens["access_token"])

    def request(
        self, method: str, path: str, *, params: dict[str, Any] | None = None, json: Any = None
    ) -> ApiResponse:
        headers = {"Authorization": f"Bearer {self._access_token()}", "Accept": "application/json"}
        act_as = flask.session.get("act_as")
        if act_as:
            headers["X-Act-As"] = str(act_as)
        request_id = flask.g.get("request_id")
        if request_id:
            headers["X-Request-Id"] = request_id
        clean = {k: v for k, v in (params or {}).items() if v not in (None, "", [])}
        try:
            response = self.client().request(method, f"/api{path}", params=clean, json=json, headers=headers)
        except httpx.HTTPError as exc:
            raise ApiUnavailable(str(exc)) from exc
        if response.status_code == 401:
            raise LoginRequired()
        body: Any = None
        if response.content:
            try:
                body = response.json()
            except ValueError:
                body = response.text
        return ApiResponse(response.status_code, body, response.headers)

    def raw(self, method: str, path: str, *, params: dict[str, Any] | None = None) -> httpx.Response:
        """The upstream answer as is (downloads)."""
        headers = {"Authorization": f"Bearer {self._access_token()}"}
        if flask.session.get("act_as"):
            headers["X-Act-As"] = str(flask.session["act_as"])
        clean = {k: v for k, v in (params or {}).items() if v not in (None, "", [])}
        try:
            response = self.client().request(method, f"/api{path}", params=clean, headers=headers)
        except httpx.HTTPError as exc:
            raise ApiUnavailable(str(exc)) from exc
        if response.status_code == 401:
            raise LoginRequired()
        return response

    def get(self, path: str, **params: Any) -> ApiResponse:
        return self.request("GET", path, params=params)

    def post(self, path: str, json: Any = None) -> ApiResponse:
        return self.request("POST", path, json=json if json is not None else {})

    def put(self, path: str, json: Any = None) -> ApiResponse:
        return self.request("PUT", path, json=json if json is not None else {})

    def patch(self, path: str, json: Any = None) -> ApiResponse:
        return self.request("PATCH", path, json=json if json is not None else {})

    def delete(self, path: str) -> ApiResponse:
        return self.request("DELETE", path)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
