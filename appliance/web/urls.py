from django.contrib.auth import views as auth_views
from django.urls import path

from appliance.web import views

urlpatterns = [
    path("", views.ask, name="ask"),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("questions/<int:question_id>/", views.question, name="question"),
    path("collections/", views.collections, name="collections"),
    path("collections/<int:collection_id>/", views.collection, name="collection"),
    path("collections/<int:collection_id>/upload", views.upload, name="upload"),
    path("documents/<int:document_id>/passage", views.passage, name="passage"),
    path("documents/<int:document_id>/file", views.document_file, name="document-file"),
    path("documents/<int:document_id>/<str:action>", views.document_action, name="document-action"),
    path("audit/", views.audit_log, name="audit"),
]
