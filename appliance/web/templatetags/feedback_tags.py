from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from django import template

from inference.models import Feedback

register = template.Library()


@register.inclusion_tag("_answer_tools.html", takes_context=True)
def answer_tools(context: Any, turn: Any) -> dict[str, Any]:
    """Copy, link and the feedback form under one answer of the asker's own (the question
    page shows only their own questions)."""
    request = context["request"]
    feedback = Feedback.objects.filter(question_id=turn.pk, user_id=request.user.pk).first()
    return {"turn": turn, "feedback": feedback, "csrf_token": context.get("csrf_token")}


@register.inclusion_tag("_answer_tools.html", takes_context=True)
def live_answer_tools(context: Any) -> dict[str, Any]:
    """The same tools for an answer streamed into the page, for question id 0: the script
    that copies them under the answer puts the real id in."""
    placeholder = SimpleNamespace(pk=0, status="done")
    return {"turn": placeholder, "feedback": None, "csrf_token": context.get("csrf_token")}
