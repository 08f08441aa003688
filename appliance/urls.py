from django.urls import include, path

from appliance import health
from appliance.operations import exporter
from appliance.web import urls as web_urls

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("metrics", exporter.metrics_view, name="metrics"),
    path("api/v1/", include("appliance.api.urls")),
    path("v1/", include("appliance.api.openai_urls")),  # the OpenAI-compatible API
    path("", include(web_urls)),
]
