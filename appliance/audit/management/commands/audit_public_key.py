from __future__ import annotations

from django.core.management.base import BaseCommand

from appliance.audit import signing


class Command(BaseCommand):
    help = (
        "Print the Ed25519 public key that checks this appliance's audit manifests. Give it "
        "to whoever verifies exports elsewhere: audit_verify <file> --public-key <key>."
    )

    def handle(self, *args: object, **options: object) -> None:
        self.stdout.write(signing.public_key_hex())
