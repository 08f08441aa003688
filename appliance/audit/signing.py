"""Signing audit manifests with the appliance's own Ed25519 key.

The key comes from ``APPLIANCE_AUDIT_SIGNING_KEY`` (or ``_FILE``), a secret that
``deploy/up`` writes once into the settings file; it is independent of Django's
SECRET_KEY, so rotating one does not invalidate the other. The Ed25519 key pair is derived
from that secret, so the public key can be handed to a compliance officer, who can then
check a manifest offline without holding any secret (``audit_verify --public-key``).

In development, without a configured key, one is derived from SECRET_KEY (production
refuses to start without a dedicated key, see settings.py).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from django.conf import settings

ALGORITHM = "ed25519"
_DERIVATION_LABEL = b"appliance audit signing key v1\x00"


class BadPublicKey(ValueError):
    pass


def _private_key() -> Ed25519PrivateKey:
    secret = getattr(settings, "AUDIT_SIGNING_KEY", "") or (
        "derived-from-secret-key:" + settings.SECRET_KEY
    )
    seed = hashlib.sha256(_DERIVATION_LABEL + secret.encode("utf-8")).digest()
    return Ed25519PrivateKey.from_private_bytes(seed)


def public_key_hex() -> str:
    raw = _private_key().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return raw.hex()


def _signed_body(manifest: dict[str, Any]) -> bytes:
    content = {k: v for k, v in manifest.items() if k != "signature"}
    return json.dumps(content, sort_keys=True, separators=(",", ":")).encode("utf-8")


def sign(manifest: dict[str, Any]) -> str:
    """The signature (hex) over every field of the manifest except ``signature``."""
    return _private_key().sign(_signed_body(manifest)).hex()


def read_public_key(value: str) -> str:
    """A public key given as 64 hex characters, or a file holding them."""
    text = value.strip()
    if len(text) != 64 or any(c not in "0123456789abcdefABCDEF" for c in text):
        path = Path(text)
        if not path.is_file():
            raise BadPublicKey("the public key must be 64 hex characters or a file holding them")
        text = path.read_text(encoding="utf-8").strip()
    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(text))
    except ValueError:
        raise BadPublicKey("that is not an Ed25519 public key") from None
    return text.lower()


def check(manifest: dict[str, Any], trusted_public_key: str | None = None) -> str | None:
    """None when the manifest is signed by the trusted key (the appliance's own by
    default), else the reason it is not. The key named inside the manifest is never
    trusted by itself: anyone can sign with a key of their own."""
    trusted = (trusted_public_key or public_key_hex()).lower()
    if manifest.get("signature_algorithm") != ALGORITHM:
        return "the manifest is not signed with Ed25519"
    if str(manifest.get("public_key", "")).lower() != trusted:
        return "the manifest was signed with another key than the one trusted"
    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(trusted)).verify(
            bytes.fromhex(str(manifest.get("signature", ""))), _signed_body(manifest)
        )
    except (InvalidSignature, ValueError):
        return "the manifest's signature is wrong (manifest altered or another key)"
    return None
