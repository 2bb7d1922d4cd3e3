"""API documentation: one Swagger UI page listing every contract, served without any CDN.

Swagger UI's assets come from the installed `swagger_ui_bundle` package. Contracts are
served as the gateway exposes them: internal operations removed, `servers: /api` so
"Try it out" goes through the gateway.
"""

from __future__ import annotations

import copy
import html
import json
from pathlib import Path
from typing import Any

import yaml

from gateway.routes import HTTP_METHODS, Contract

__all__ = ["public_contract", "swagger_page", "swagger_ui_dir"]


def swagger_ui_dir() -> Path:
    import swagger_ui_bundle

    return Path(str(swagger_ui_bundle.swagger_ui_path))


def public_contract(contract: Contract) -> bytes:
    """The contract as YAML, minus what the gateway never exposes."""
    document: dict[str, Any] = copy.deepcopy(contract.document)
    document["servers"] = [{"url": contract.base or "/"}]
    paths = document.get("paths") or {}
    for relative in list(paths):
        item = paths[relative]
        if not isinstance(item, dict):
            continue
        item_internal = item.get("x-internal") is True
        for method in HTTP_METHODS:
            operation = item.get(method)
            if isinstance(operation, dict) and operation.get("x-internal", item_internal) is True:
                del item[method]
        if not any(method in item for method in HTTP_METHODS):
            del paths[relative]
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True).encode("utf-8")


def swagger_page(
    services: list[str], *, static_prefix: str = "/docs/static", contracts_prefix: str = "/contracts"
) -> str:
    urls = [{"url": f"{contracts_prefix}/{name}.yaml", "name": name} for name in services]
    # JSON inside a <script>: escape "</" so a service name cannot close the tag.
    config = json.dumps(urls).replace("</", "<\\/")
    prefix = html.escape(static_prefix, quote=True)
    return f"""<!doctype html>
<html lang="fr">
<head>
  <meta charset="utf-8">
  <title>Coordo — API</title>
  <link rel="stylesheet" href="{prefix}/swagger-ui.css">
  <link rel="icon" type="image/png" href="{prefix}/favicon-32x32.png" sizes="32x32">
  <style>body {{ margin: 0; }}</style>
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{prefix}/swagger-ui-bundle.js"></script>
  <script src="{prefix}/swagger-ui-standalone-preset.js"></script>
  <script>
    window.onload = function () {{
      window.ui = SwaggerUIBundle({{
        urls: {config},
        dom_id: "#swagger-ui",
        deepLinking: true,
        presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
        plugins: [SwaggerUIBundle.plugins.DownloadUrl],
        layout: "StandaloneLayout"
      }});
    }};
  </script>
</body>
</html>
"""
