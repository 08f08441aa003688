"""Grants for the application's database role, applied after every migration.

Migrations run as the owner role (APPLIANCE_DB_OWNER_USER); the running appliance connects
as the application role (APPLIANCE_DB_USER), which may read and write the ordinary tables
but only SELECT and INSERT on the audit log. See docs/security.md, "Database roles".
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import connections


def grant_app_role(using: str = "default", **_: Any) -> None:
    role = settings.DB_APP_ROLE
    connection = connections[using]
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role])
        if cursor.fetchone() is None or connection.settings_dict["USER"] == role:
            return
        quoted = connection.ops.quote_name(role)
        cursor.execute(f"GRANT USAGE ON SCHEMA public TO {quoted}")
        cursor.execute(
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {quoted}"
        )
        cursor.execute(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {quoted}")
        # The log: the appliance appends and reads. Its retention anchors are written only by
        # `audit_prune`, which runs as the owner, so the appliance may only read them.
        for table, refused in (
            ("audit_auditevent", "UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER"),
            ("audit_auditanchor", "INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER"),
        ):
            cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [table])
            if cursor.fetchone()[0]:
                cursor.execute(f"REVOKE {refused} ON {table} FROM {quoted}")
