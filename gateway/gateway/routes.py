"""The route table, derived from the OpenAPI contracts themselves (no hand-kept table).

Every `contracts/openapi/*.yaml` names its owner (`info.x-service`) and its base path
(`servers[0].url`, `/api`). Each path + method becomes a route: the owning service, the
path template, a compiled regex, the parameter naming the patient (`x-patient-scope` on
the operation or on the path item) and whether it is internal (`x-internal: true`,
never exposed by the gateway).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

__all__ = ["Contract", "Match", "Route", "RouteTable", "RouteTableError", "load_contract", "load_contracts"]

_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_PARAM = re.compile(r"\{([^{}/]+)\}")


class RouteTableError(ValueError):
    """The contracts cannot make a coherent route table (e.g. two owners for one operation)."""


@dataclass(frozen=True)
class Contract:
    service: str
    path: Path
    document: dict[str, Any]
    base: str


@dataclass(frozen=True)
class Route:
    service: str
    method: str  # upper case
    template: str  # full path template, base included: /api/patients/{patient_id}
    regex: re.Pattern[str] = field(compare=False, repr=False)
    params: tuple[str, ...]
    patient_param: str | None
    internal: bool
    operation_id: str | None = None

    @property
    def patient_scoped(self) -> bool:
        return self.patient_param is not None


@dataclass(frozen=True)
class Match:
    """The outcome of a lookup: a route, or why there is none (404 / 405)."""

    route: Route | None
    params: dict[str, str]
    allowed_methods: tuple[str, ...] = ()

    @property
    def patient_id(self) -> str | None:
        if self.route is None or self.route.patient_param is None:
            return None
        return self.params.get(self.route.patient_param)


@dataclass
class _PathEntry:
    template: str
    regex: re.Pattern[str]
    params: tuple[str, ...]
    by_method: dict[str, Route] = field(default_factory=dict)


def _compile(template: str) -> tuple[re.Pattern[str], tuple[str, ...]]:
    params: list[str] = []
    pattern = ["^"]
    position = 0
    for found in _PARAM.finditer(template):
        pattern.append(re.escape(template[position : found.start()]))
        # One path segment per parameter, never empty (positional groups: names may not
        # be Python identifiers).
        pattern.append("([^/]+)")
        params.append(found.group(1))
        position = found.end()
    pattern.append(re.escape(template[position:]))
    pattern.append("$")
    return re.compile("".join(pattern)), tuple(params)


def _specificity(template: str) -> tuple[tuple[int, ...], int]:
    # OpenAPI: a concrete path wins over a templated one (`/patients/search` before
    # `/patients/{patient_id}`), segment by segment from the left.
    segments = template.strip("/").split("/")
    return tuple(1 if _PARAM.search(s) else 0 for s in segments), -len(segments)


def _base_path(document: Mapping[str, Any]) -> str:
    servers = document.get("servers") or []
    url = "/api"
    if servers and isinstance(servers[0], Mapping) and servers[0].get("url"):
        url = str(servers[0]["url"])
    path = urlsplit(url).path if "://" in url else url
    return "/" + path.strip("/") if path.strip("/") else ""


def load_contract(path: Path) -> Contract:
    # The C loader when built (10x faster: every gateway start reads every contract).
    document = yaml.load(path.read_text(encoding="utf-8"), Loader=_LOADER)
    if not isinstance(document, dict):
        raise RouteTableError(f"{path.name}: not an OpenAPI document")
    info = document.get("info") or {}
    service = info.get("x-service") if isinstance(info, dict) else None
    if not isinstance(service, str) or not service:
        raise RouteTableError(f"{path.name}: info.x-service is missing")
    return Contract(service=service, path=path, document=document, base=_base_path(document))


def load_contracts(contracts_dir: Path, extra: Iterable[Path] = ()) -> list[Contract]:
    """Every OpenAPI contract of `contracts_dir/openapi`, sorted by file name, then `extra` ones."""
    paths = [*sorted((contracts_dir / "openapi").glob("*.yaml")), *extra]
    return [load_contract(path) for path in paths]


def _routes_of(contract: Contract) -> Iterable[Route]:
    paths = contract.document.get("paths") or {}
    for relative, item in paths.items():
        if not isinstance(item, Mapping):
            continue
        template = contract.base + "/" + str(relative).lstrip("/")
        regex, params = _compile(template)
        for method in HTTP_METHODS:
            operation = item.get(method)
            if not isinstance(operation, Mapping):
                continue
            scope = operation.get("x-patient-scope", item.get("x-patient-scope"))
            if scope is not None and scope not in params:
                raise RouteTableError(
                    f"{contract.path.name}: {method.upper()} {relative}: x-patient-scope {scope!r} "
                    "is not a path parameter"
                )
            internal = operation.get("x-internal", item.get("x-internal", False)) is True
            yield Route(
                service=contract.service,
                method=method.upper(),
                template=template,
                regex=regex,
                params=params,
                patient_param=scope,
                internal=internal,
                operation_id=operation.get("operationId"),
            )


class RouteTable:
    """Lookup of `(method, path)` → route; built once, read on every request."""

    def __init__(self, routes: Iterable[Route], contracts: Iterable[Contract] = ()) -> None:
        self.contracts = list(contracts)
        entries: dict[str, _PathEntry] = {}
        for route in routes:
            entry = entries.get(route.template)
            if entry is None:
                entry = entries[route.template] = _PathEntry(route.template, route.regex, route.params)
            previous = entry.by_method.get(route.method)
            if previous is not None:
                raise RouteTableError(
                    f"{route.method} {route.template} is declared by both {previous.service} and {route.service}"
                )
            entry.by_method[route.method] = route
        ordered = sorted(entries.values(), key=lambda e: _specificity(e.template))
        # Index by the first literal segment so a lookup only tries a handful of regexes.
        self._by_head: dict[str, list[_PathEntry]] = {}
        self._wild: list[_PathEntry] = []
        for entry in ordered:
            head = self._head(entry.template)
            if _PARAM.search(head):
                self._wild.append(entry)
            else:
                self._by_head.setdefault(head, []).append(entry)
        self._entries = ordered

    @staticmethod
    def _head(path: str) -> str:
        # "/api/patients/x" -> "/api/patients": base and first resource segment.
        parts = path.split("/", 3)
        return "/".join(parts[:3])

    @classmethod
    def from_contracts_dir(cls, contracts_dir: Path, extra: Iterable[Path] = ()) -> RouteTable:
        contracts = load_contracts(contracts_dir, extra)
        routes = [route for contract in contracts for route in _routes_of(contract)]
        return cls(routes, contracts)

    @property
    def routes(self) -> list[Route]:
        return [route for entry in self._entries for route in entry.by_method.values()]

    @property
    def services(self) -> list[str]:
        return sorted({c.service for c in self.contracts} | {r.service for r in self.routes})

    def find(self, method: str, path: str) -> Route | None:
        """The route declared for exactly this method and template-matching path (internal ones too)."""
        match = self.match(method, path, include_internal=True)
        return match.route

    def match(self, method: str, path: str, *, include_internal: bool = False) -> Match:
        """Route for `method path`; `route is None` with allowed_methods means 405, without, 404."""
        candidates = self._by_head.get(self._head(path), ())
        for entries in (candidates, self._wild):
            for entry in entries:
                found = entry.regex.match(path)
                if found is None:
                    continue
                route = entry.by_method.get(method)
                if route is not None:
                    if route.internal and not include_internal:
                        # Never exposed: answer as if the operation did not exist.
                        return Match(None, {})
                    return Match(route, dict(zip(entry.params, found.groups(), strict=True)))
                visible = sorted(m for m, r in entry.by_method.items() if include_internal or not r.internal)
                return Match(None, {}, allowed_methods=tuple(visible))
        return Match(None, {})
