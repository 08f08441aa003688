from django.urls import path

from appliance.api import openapi, stream, views

urlpatterns = [
    path("openapi.json", openapi.openapi, name="api-openapi"),
    path("collections", views.collections, name="api-collections"),
    path(
        "collections/<int:collection_id>/documents",
        views.collection_documents,
        name="api-collection-documents",
    ),
    path("documents/<int:document_id>", views.document, name="api-document"),
    path("questions", views.questions, name="api-questions"),
    path("questions/<int:question_id>", views.question, name="api-question"),
    path("questions/<int:question_id>/events", stream.question_events, name="api-question-events"),
    path("questions/<int:question_id>/cancel", views.question_cancel, name="api-question-cancel"),
    path("audit/events", views.audit_events, name="api-audit-events"),
    path(
        "questions/<int:question_id>/feedback",
        views.question_feedback,
        name="api-question-feedback",
    ),
    path("conversations/<int:conversation_id>", views.conversation, name="api-conversation"),
]
