"""The OpenAI-compatible API under /v1/ (appliance.api.openai_compat)."""

from django.urls import path

from appliance.api import openai_compat

urlpatterns = [
    path("models", openai_compat.models, name="openai-models"),
    path("models/<str:model_id>", openai_compat.model, name="openai-model"),
    path("chat/completions", openai_compat.chat_completions, name="openai-chat-completions"),
]
