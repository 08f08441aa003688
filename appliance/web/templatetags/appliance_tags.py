from __future__ import annotations

import re
from pathlib import PurePath

from django import template
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

register = template.Library()

_CITATION = re.compile(r"\[(\d{1,3})\]")


@register.filter
def with_citation_links(text: str, question_id: int) -> SafeString:
    """The answer as plain text (escaped; never the model's HTML), with [n] linked to the
    n-th source listed below it."""
    escaped = str(escape(text or ""))
    linked = _CITATION.sub(
        lambda m: f'<a class="cite" href="#q{question_id}-source-{m.group(1)}">[{m.group(1)}]</a>',
        escaped,
    )
    return mark_safe(linked.replace("\n", "<br>"))  # noqa: S308 - built from escaped text


_SHOWN_ITEMS = 4
_SHOWN_CHARS = 90


@register.filter
def audit_summary(details: dict) -> str:
    """An audit row's details in one short line for the table: ``key: value`` pairs, long
    lists cut short, the whole line at most _SHOWN_CHARS (the full JSON is one click away,
    and in every export)."""
    parts = []
    for key, value in (details or {}).items():
        if isinstance(value, list) and len(value) > _SHOWN_ITEMS:
            shown = ", ".join(str(v) for v in value[:_SHOWN_ITEMS])
            value = f"[{shown}, … {len(value) - _SHOWN_ITEMS} more]"
        parts.append(f"{key}: {value}")
    line = "; ".join(parts)
    return line if len(line) <= _SHOWN_CHARS else line[: _SHOWN_CHARS - 1] + "…"


@register.filter
def embedding_model_name(name: str) -> str:
    """A model named by an absolute path is shown by its folder's name: the path says
    nothing to a curator, and where the appliance keeps its files is no one else's concern."""
    return PurePath(name).name if name.startswith("/") else name
