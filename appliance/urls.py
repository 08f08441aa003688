from django.urls import include, path

from appliance import health
from appliance.operations import exporter
from appliance.web import urls as web_urls

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("metrics", exporter.metrics_view, name="metrics"),
    path("api/v1/", include("appliance.api.urls")),
    path("", include(web_urls)),
]
