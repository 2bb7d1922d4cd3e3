"""French texts from the Jinja2 templates in notify/templates/ (NOT-4).

One template per notification type; its `message` block is also the in-application text,
so the bell and the e-mail always say the same thing. Plain text, no autoescape (no HTML),
StrictUndefined so that a missing value fails loudly instead of printing nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2

from notify import domain

TEMPLATES = Path(__file__).parent / "templates"


@dataclass(frozen=True)
class Rendered:
    title: str
    in_app: str
    subject: str
    email: str


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
    )


def render(code: str, context: dict[str, Any]) -> Rendered:
    unexpected = set(context) - domain.TEMPLATE_FIELDS
    if unexpected:  # NOT-4: only vetted names (codes, dates, professionals) reach a message
        raise ValueError(f"not allowed in a notification: {sorted(unexpected)}")
    values = {name: None for name in domain.TEMPLATE_FIELDS} | context
    template = environment().get_template(f"{code}.txt.j2")
    message = "".join(template.blocks["message"](template.new_context(values))).strip()
    title = domain.TYPES[code].title
    return Rendered(
        title=title,
        in_app=message,
        subject=f"[Coordo] {title}",
        email=template.render(values),
    )


def digest(summaries: list[str]) -> str:
    """The daily digest: each notification's text and link, in the order they came."""
    return environment().get_template("digest.txt.j2").render(summaries=summaries)
