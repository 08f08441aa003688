from __future__ import annotations

from typing import Any

from django import template

from appliance.web.sharing import panel_context

register = template.Library()


@register.inclusion_tag("sharing.html", takes_context=True)
def sharing_panel(context: Any) -> dict[str, Any]:
    """The sharing panel of the collection page, for the curators who may change it."""
    collection = context.get("collection")
    if collection is None or not context.get("can_manage"):
        return {"show": False}
    return {
        "show": True,
        "csrf_token": context.get("csrf_token"),
        **panel_context(collection),
    }
