"""The audit hash chain: one canonical form, used when writing and when verifying.

Each row's ``hash`` is SHA-256 over the previous row's hash and the row's canonical
content. Identity (actor, IP address, user agent, and the subject: the person an act is
about) enters only as ``identity_digest``, SHA-256 over a random per-row salt and those
values: the clear values can be verified while present, and replaced by a pseudonym (salt
dropped) without breaking the chain.
This module has no Django imports so that ``audit_verify`` logic stays plain.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

GENESIS = "0" * 64

# Fields in the canonical content, in this order. Changing this list breaks every export
# made before the change: add a version field first.
CANONICAL_FIELDS = (
    "id",
    "created_at",
    "actor_id",
    "actor_departments",
    "identity_digest",
    "action",
    "object_type",
    "object_id",
    "details",
)


def identity_digest(salt: str, actor: str, ip: str, user_agent: str, subject: str = "") -> str:
    # A row without a subject hashes exactly as rows did before subjects existed.
    parts = (salt, actor, ip, user_agent, subject) if subject else (salt, actor, ip, user_agent)
    material = "\x1f".join(parts)
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


def canonical(row: Mapping[str, Any]) -> bytes:
    content = {name: row[name] for name in CANONICAL_FIELDS}
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def row_hash(prev_hash: str, row: Mapping[str, Any]) -> str:
    return hashlib.sha256(prev_hash.encode("ascii") + b"\n" + canonical(row)).hexdigest()


class ChainError(Exception):
    def __init__(self, row_id: Any, reason: str) -> None:
        super().__init__(f"row {row_id}: {reason}")
        self.row_id = row_id
        self.reason = reason


def verify_rows(
    rows: Any, *, contiguous: bool = True, anchor: str | None = None
) -> tuple[int, str | None, str | None]:
    """Check rows in order. Returns (count, first hash, last hash); raises ChainError.

    ``contiguous``: the rows are an unbroken stretch of the log, so each must follow the
    one before it. A filtered export (one user, one action) is not; there each row is
    checked on its own and the manifest's signature guards against removed rows.
    ``anchor`` is the hash the first row must follow; when None, whatever the first row
    names as its predecessor is accepted (the signed manifest pins where it starts).
    """
    count, first, previous = 0, None, anchor
    for row in rows:
        if contiguous and previous is not None and row["prev_hash"] != previous:
            raise ChainError(row.get("id"), "its previous-hash does not match the row before it")
        if row.get("identity_salt"):
            expected = identity_digest(
                row["identity_salt"],
                row.get("actor", ""),
                row.get("ip", ""),
                row.get("user_agent", ""),
                row.get("subject", ""),
            )
            if expected != row["identity_digest"]:
                raise ChainError(row.get("id"), "actor, subject, address or user agent was altered")
        if row_hash(row["prev_hash"], row) != row["hash"]:
            raise ChainError(row.get("id"), "its content does not match its hash")
        count += 1
        first = first or row["hash"]
        previous = row["hash"]
    return count, first, previous
