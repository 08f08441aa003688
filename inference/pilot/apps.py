from django.apps import AppConfig


class PilotConfig(AppConfig):
    name = "inference.pilot"
    label = "pilot"
    verbose_name = "Pilot workbench"
    default_auto_field = "django.db.models.BigAutoField"
