from django.apps import AppConfig


class WebConfig(AppConfig):
    name = "appliance.web"
    label = "web"
    verbose_name = "Web pages"
