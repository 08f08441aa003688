from django.urls import path
from django.views.i18n import JavaScriptCatalog

from appliance.web import auditor, feedback, operator, pilot, pilot_drafts, sharing, signin, views
from appliance.web import language as language_views

urlpatterns = [
    path("", views.ask, name="ask"),
    path("login/", signin.LoginView.as_view(), name="login"),
    path("login/oidc/", signin.oidc_start, name="oidc-login"),
    path("login/oidc/callback", signin.oidc_callback, name="oidc-callback"),
    path("logout/", signin.LogoutView.as_view(), name="logout"),
    path("questions/<int:question_id>/", views.question, name="question"),
    path("collections/", views.collections, name="collections"),
    path("collections/<int:collection_id>/", views.collection, name="collection"),
    path("collections/<int:collection_id>/upload", views.upload, name="upload"),
    path(
        "collections/<int:collection_id>/suggestions",
        views.collection_suggestions,
        name="collection-suggestions",
    ),
    path("documents/<int:document_id>/passage", views.passage, name="passage"),
    path("documents/<int:document_id>/file", views.document_file, name="document-file"),
    path("documents/<int:document_id>/<str:action>", views.document_action, name="document-action"),
    path(
        "collections/<int:collection_id>/sharing",
        sharing.change_sharing,
        name="collection-sharing",
    ),
    path("audit/", auditor.audit_log, name="audit"),
    path("audit/export", auditor.audit_download, name="audit-export"),
    path("audit/verify", auditor.audit_verify, name="audit-verify"),
    path("pilot/", pilot.index, name="pilot"),
    path("pilot/golden-sets", pilot.upload_golden_set, name="pilot-upload"),
    path("pilot/golden-sets/<int:golden_set_id>/", pilot.golden_set, name="pilot-golden-set"),
    path("pilot/golden-sets/new", pilot_drafts.create_empty, name="pilot-new-golden-set"),
    path(
        "pilot/golden-sets/<int:golden_set_id>/drafts",
        pilot_drafts.request_drafts,
        name="pilot-drafts",
    ),
    path(
        "pilot/golden-sets/<int:golden_set_id>/drafts/progress",
        pilot_drafts.progress,
        name="pilot-drafts-progress",
    ),
    path(
        "pilot/golden-sets/<int:golden_set_id>/drafts/review",
        pilot_drafts.review,
        name="pilot-drafts-review",
    ),
    path(
        "pilot/golden-sets/<int:golden_set_id>/drafts/stop",
        pilot_drafts.stop,
        name="pilot-drafts-stop",
    ),
    path("pilot/configurations", pilot.save_configuration, name="pilot-configure"),
    path("pilot/runs", pilot.start_run, name="pilot-start"),
    path("pilot/runs/<int:run_id>/", pilot.run, name="pilot-run"),
    path("pilot/runs/<int:run_id>/progress", pilot.run_progress, name="pilot-run-progress"),
    path("pilot/runs/<int:run_id>/cancel", pilot.cancel_run, name="pilot-run-cancel"),
    path("pilot/compare", pilot.compare, name="pilot-compare"),
    path("pilot/compare.<str:fmt>", pilot.compare_download, name="pilot-compare-download"),
    path("operator/", operator.index, name="operator"),
    path(
        "operator/departments/create",
        operator.create_department,
        name="operator-create-department",
    ),
    path("operator/users/create", operator.create_user, name="operator-create-user"),
    path("operator/users/<int:user_id>/", operator.person, name="operator-user"),
    path(
        "operator/users/<int:user_id>/memberships/add",
        operator.add_membership,
        name="operator-add-membership",
    ),
    path(
        "operator/users/<int:user_id>/memberships/<int:membership_id>/remove",
        operator.remove_membership,
        name="operator-remove-membership",
    ),
    path(
        "operator/users/<int:user_id>/memberships/<int:membership_id>/role",
        operator.change_role,
        name="operator-change-role",
    ),
    path(
        "operator/users/<int:user_id>/deactivate",
        operator.set_active,
        {"active": "deactivate"},
        name="operator-deactivate",
    ),
    path(
        "operator/users/<int:user_id>/activate",
        operator.set_active,
        {"active": "activate"},
        name="operator-activate",
    ),
    path("operator/groups/", operator.group_mappings, name="operator-groups"),
    path("operator/groups/add", operator.add_group_mapping, name="operator-add-group"),
    path(
        "operator/groups/<int:mapping_id>/remove",
        operator.remove_group_mapping,
        name="operator-remove-group",
    ),
    path("language/", language_views.choose_language, name="language"),
    path("jsi18n/", JavaScriptCatalog.as_view(), name="javascript-catalog"),
]

# Feedback on answers, deleting conversations, and the curators' feedback page.
urlpatterns += [
    path("questions/<int:question_id>/feedback", feedback.give, name="question-feedback"),
    path(
        "conversations/<int:conversation_id>/delete",
        feedback.delete_conversation,
        name="conversation-delete",
    ),
    path("feedback/", feedback.curator_page, name="curator-feedback"),
    path("feedback/<int:feedback_id>/golden", feedback.to_golden_set, name="feedback-golden"),
]
