"""Which API operations exist, read from the OpenAPI contracts the gateway routes from.

Screens whose API is still being built show what exists; this is how they know.
"""

from __future__ import annotations

from functools import lru_cache

import yaml

from chassis.settings import contracts_dir

_METHODS = ("get", "put", "post", "delete", "patch")


@lru_cache(maxsize=1)
def operations() -> frozenset[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for path in sorted((contracts_dir() / "openapi").glob("*.yaml")):
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for template, item in (document.get("paths") or {}).items():
            for method in _METHODS:
                operation = (item or {}).get(method)
                if isinstance(operation, dict) and not operation.get("x-internal", item.get("x-internal")):
                    found.add((method.upper(), str(template)))
    return frozenset(found)


def has_operation(method: str, template: str) -> bool:
    return (method.upper(), template) in operations()


def parameters(method: str, template: str) -> frozenset[str]:
    """The query parameter names an operation declares (to build only filters the API takes)."""
    names: set[str] = set()
    for path in sorted((contracts_dir() / "openapi").glob("*.yaml")):
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        item = (document.get("paths") or {}).get(template)
        operation = (item or {}).get(method.lower())
        if not isinstance(operation, dict):
            continue
        for param in [*((item or {}).get("parameters") or []), *(operation.get("parameters") or [])]:
            if "$ref" in param:
                ref = param["$ref"].rsplit("/", 1)[-1]
                param = (document.get("components", {}).get("parameters", {}) or {}).get(ref, {})
            if param.get("in") == "query" and param.get("name"):
                names.add(str(param["name"]))
    return frozenset(names)
