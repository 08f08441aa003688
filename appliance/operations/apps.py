from django.apps import AppConfig


class OperationsConfig(AppConfig):
    name = "appliance.operations"
    label = "operations"
    verbose_name = "Backups, restores and checks"
