from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "appliance.audit"
    label = "audit"
    verbose_name = "Audit log"
