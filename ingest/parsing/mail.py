"""E-mails (.eml, .msg): the headers people search by, the body, and the attachments.

The body goes through unstructured (it copes with the many broken encodings of real
mail). Attachments are not left to unstructured: each is saved under a name of ours and
read through the appliance's own parse path, so the same checks (content vs extension,
XML bombs, encryption) apply to them as to uploaded files. An attachment that cannot be
read is skipped, not fatal: the mail itself still answers.
"""

from __future__ import annotations

import email
import logging
import tempfile
from collections.abc import Callable, Iterator
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from ingest.parsing.base import Block, ParseError, ProgressCallback, UnsupportedFile, kind_for_name
from ingest.parsing.offline import configure_unstructured
from ingest.parsing.text import clean
from ingest.parsing.unstructured_files import human_reason
from ingest.storage import safe_display_name

log = logging.getLogger(__name__)

MAX_ATTACHMENTS = 50
_TRANSCODED = "X-Appliance-Transcoded-From"
ENCRYPTED = (
    "This e-mail is encrypted, so its text cannot be read. Upload a decrypted copy "
    "(or the message as it appears after opening it)."
)
# Parses one attachment: (path, kind, progress) -> blocks. Supplied by the dispatcher.
AttachmentParser = Callable[[Path, str], Iterator[Block]]


def parse_mail(
    path: Path,
    kind: str,
    parse_attachment: AttachmentParser | None,
    progress: ProgressCallback | None = None,
) -> Iterator[Block]:
    configure_unstructured()
    message: EmailMessage | None = None
    if kind == "eml":
        message = _read_eml(path)
        if _is_encrypted_eml(message):
            raise ParseError(ENCRYPTED)
        attachments = list(_eml_attachments(message))
        from unstructured.partition.email import partition_email

        partition: Any = partition_email
    else:
        attachments = list(_msg_attachments(path))
        from unstructured.partition.msg import partition_msg

        partition = partition_msg
    try:
        elements = partition(filename=str(path), process_attachments=False)
    except (ParseError, MemoryError):
        raise
    except Exception as exc:
        raise ParseError(human_reason(kind, exc)) from exc
    yield from _body_blocks(elements, message)
    if parse_attachment is not None:
        yield from _attachment_blocks(attachments, parse_attachment)
    if progress:
        progress(1, 1)


def _body_blocks(elements: list[Any], message: EmailMessage | None) -> Iterator[Block]:
    """Subject (the heading), who wrote to whom, then the body. For .eml the headers come
    from Python's own parser, which keeps them even when the mail has no body; a body that
    unstructured finds nothing in (digests, odd structures) is read part by part."""
    meta = elements[0].metadata if elements else None
    subject = clean(str(getattr(meta, "subject", "") or ""))
    people: list[str] = []
    if message is not None:
        subject = clean(str(message.get("subject", "") or "")) or subject
        for label in ("From", "To", "Cc", "Date"):
            value = clean(str(message.get(label, "") or ""))
            if value:
                people.append(f"{label}: {value}")
    elif meta is not None:
        for label, field in (("From", "sent_from"), ("To", "sent_to"), ("Cc", "cc_recipient")):
            value = getattr(meta, field, None)
            if value:
                shown = ", ".join(value) if isinstance(value, list) else str(value)
                people.append(f"{label}: {shown}")
    heading = subject[:300]
    if subject:
        yield Block(text=subject, heading=heading, kind="title")
    if people:
        yield Block(text="; ".join(people), heading=heading)
    texts = [clean(element.text) for element in elements]
    transcoded = message is not None and message.get(_TRANSCODED) is not None
    if message is not None and (transcoded or not any(texts)):
        texts = list(_plain_parts(message))
    for text in texts:
        if text:
            yield Block(text=text, heading=heading)


def _plain_parts(message: EmailMessage) -> Iterator[str]:
    """The text of every part that is not an attachment (inner messages included)."""
    from html.parser import HTMLParser

    for part in message.walk():
        if part.is_multipart() or part.get_filename():
            continue
        content_type = part.get_content_type()
        if content_type not in ("text/plain", "text/html"):
            continue
        try:
            text = part.get_content()
        except (LookupError, UnicodeError, AssertionError):
            continue
        if content_type == "text/html":
            pieces: list[str] = []
            reader = HTMLParser()
            reader.handle_data = pieces.append  # type: ignore[method-assign]
            reader.feed(str(text))
            text = " ".join(pieces)
        for paragraph in str(text).split("\n\n"):
            yield clean(paragraph)


def _attachment_blocks(
    attachments: list[tuple[str, bytes]], parse_attachment: AttachmentParser
) -> Iterator[Block]:
    for name, payload in attachments[:MAX_ATTACHMENTS]:
        display = safe_display_name(name or "attachment")
        try:
            kind = kind_for_name(display)
        except UnsupportedFile:
            continue
        if kind in ("zip", "eml", "msg") or not payload:
            continue  # no archives or mail inside mail: one level of unpacking only
        heading = f"Attachment: {display}"[:300]
        with tempfile.TemporaryDirectory(prefix="appliance-attachment-") as folder:
            target = Path(folder) / f"attachment{Path(display).suffix.lower()}"
            target.write_bytes(payload)
            try:
                blocks = list(parse_attachment(target, kind))
            except ParseError as exc:
                log.info("attachment %s skipped: %s", display, exc)
                continue
        yield Block(text=heading, heading=heading, kind="title")
        for block in blocks:
            # The attachment's own pages are not the mail's pages: cite the mail.
            yield Block(text=block.text, page=None, heading=heading, kind=block.kind)


def _read_eml(path: Path) -> EmailMessage:
    raw = path.read_bytes()
    encoding = _utf16(raw)
    if encoding:
        raw = raw.decode(encoding, "replace").encode("utf-8")
        message = email.message_from_bytes(raw, policy=policy.default)
        # unstructured misreads UTF-16 mail; the body is then taken from this parse.
        message[_TRANSCODED] = encoding
        return message  # type: ignore[return-value]
    return email.message_from_bytes(raw, policy=policy.default)  # type: ignore[return-value]


def _utf16(raw: bytes) -> str:
    """ "utf-16" (with a byte order mark), "utf-16-be"/"-le" (without), or "" for mail in
    an ASCII-compatible encoding, as mail should be."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16"
    head = raw[:400]
    even, odd = head[0::2].count(0), head[1::2].count(0)
    half = max(len(head) // 2, 1)
    if even > 0.4 * half and odd < 0.05 * half:
        return "utf-16-be"
    if odd > 0.4 * half and even < 0.05 * half:
        return "utf-16-le"
    return ""


def _is_encrypted_eml(message: EmailMessage) -> bool:
    content_type = message.get_content_type()
    if content_type == "multipart/encrypted":
        return True
    if content_type in ("application/pkcs7-mime", "application/x-pkcs7-mime"):
        return "signed-data" not in str(message.get("Content-Type", "")).lower()
    return False


def _eml_attachments(message: EmailMessage) -> Iterator[tuple[str, bytes]]:
    for part in message.walk():
        if part.is_multipart():
            continue
        name = part.get_filename()
        if not name or part.get_content_disposition() not in ("attachment", "inline"):
            continue
        try:
            payload = part.get_payload(decode=True)
        except Exception as exc:  # a broken transfer encoding: skip the attachment
            log.info("attachment %s has a broken encoding: %s", name, exc)
            continue
        if isinstance(payload, bytes):
            yield name, payload


def _msg_attachments(path: Path) -> Iterator[tuple[str, bytes]]:
    import oxmsg

    try:
        message = oxmsg.Message.load(str(path))
    except Exception as exc:
        raise ParseError(f"This Outlook message is damaged and cannot be read ({exc}).") from None
    content_type = str(message.message_headers.get("Content-Type", "")).lower()
    message_class = str(getattr(message, "message_class", "") or "")
    smime_encrypted = "pkcs7-mime" in content_type and "signed-data" not in content_type
    if "encrypted" in content_type or smime_encrypted:
        raise ParseError(ENCRYPTED)
    if message_class.upper().startswith("IPM.NOTE.SMIME") and "SIGNED" not in (
        message_class.upper()
    ):
        raise ParseError(ENCRYPTED)
    for attachment in message.attachments:
        name = attachment.file_name or ""
        payload = attachment.file_bytes
        if name and payload:
            yield name, payload
