from __future__ import annotations

import re

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
