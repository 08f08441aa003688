from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "appliance.accounts"
    label = "accounts"
    verbose_name = "Accounts and departments"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from appliance.accounts import signals  # noqa: F401
        from appliance.accounts.db_roles import grant_app_role

        post_migrate.connect(grant_app_role, sender=self)
