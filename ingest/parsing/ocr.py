"""Reading text from pictures with Debian's tesseract: scanned PDF pages and image files.

No model is downloaded: tesseract's language data comes from Debian packages
(``tesseract-ocr-eng``, ``-deu``, ``-nor``, ``-fra``, ``-spa``). unstructured's hi-res
strategy, which needs hub-hosted layout models, is never used.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

from ingest.parsing.base import Block, ParseError, ProgressCallback
from ingest.parsing.text import clean, looks_like_heading

# Collection language -> tesseract language data. English is added as a second language
# because mixed documents (English terms in German text) are common.
TESSERACT_LANGUAGES = {
    "english": ["eng"],
    "german": ["deu", "eng"],
    "norwegian": ["nor", "eng"],
    "french": ["fra", "eng"],
    "spanish": ["spa", "eng"],
    "simple": ["eng"],
    "auto": ["eng", "nor", "deu"],
}
MAX_PIXELS = 60_000_000  # larger pictures are refused (decompression bombs)
OCR_DPI = 300
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")


class OcrUnavailable(ParseError):
    pass


@cache
def installed_languages() -> frozenset[str]:
    import unstructured_pytesseract as tesseract

    try:
        return frozenset(tesseract.get_languages(config=""))
    except (tesseract.TesseractNotFoundError, OSError):
        raise OcrUnavailable(
            "Reading scanned pages needs tesseract, which is not installed on this "
            "appliance (deploy/up installs it)."
        ) from None


def languages_for(language: str) -> str:
    wanted = TESSERACT_LANGUAGES.get(language, ["eng"])
    present = [code for code in wanted if code in installed_languages()]
    return "+".join(present or ["eng"])


def recognise(image: Any, language: str) -> str:
    """The text tesseract reads in a PIL image (page segmentation: automatic)."""
    import unstructured_pytesseract as tesseract

    if image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    try:
        return str(tesseract.image_to_string(image, lang=languages_for(language), timeout=300))
    except RuntimeError as exc:  # pytesseract raises RuntimeError on its own timeout
        raise ParseError(f"Reading a scanned page took too long ({exc}).") from None


def text_blocks(text: str, page: int | None, heading: str) -> Iterator[Block]:
    """Paragraphs of OCR output: tesseract separates them with blank lines."""
    for paragraph in _PARAGRAPH_BREAK.split(text):
        lines = [clean(line) for line in paragraph.splitlines()]
        lines = [line for line in lines if line]
        if not lines:
            continue
        if len(lines) == 1 and looks_like_heading(lines[0]):
            heading = lines[0]
            yield Block(text=lines[0], page=page, heading=heading, kind="title")
        else:
            # Words hyphenated at a line end are joined again.
            joined = " ".join(lines)
            yield Block(text=re.sub(r"(\w)- (\w)", r"\1\2", joined), page=page, heading=heading)


def parse_image(path: Path, language: str, progress: ProgressCallback | None) -> Iterator[Block]:
    """Every frame of an image file (multi-page TIFFs have several), read by OCR."""
    from PIL import Image, ImageSequence, UnidentifiedImageError

    if path.suffix.lower() == ".heic":
        from pi_heif import register_heif_opener

        register_heif_opener()
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(path)
            frames = getattr(image, "n_frames", 1)
            if progress:
                progress(0, frames)
            heading = ""
            for number, frame in enumerate(ImageSequence.Iterator(image), start=1):
                if frame.width * frame.height > MAX_PIXELS:
                    raise ParseError(_too_large(frame.width, frame.height))
                text = recognise(frame.copy(), language)
                for block in text_blocks(text, number if frames > 1 else None, heading):
                    if block.kind == "title":
                        heading = block.heading
                    yield block
                if progress:
                    progress(number, frames)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ParseError(
            "This image is far larger than any scan (a decompression bomb?); refused."
        ) from None
    except UnidentifiedImageError:
        raise ParseError("This image is damaged or in a format that cannot be read.") from None
    except OSError as exc:
        raise ParseError(f"This image is damaged and cannot be read ({exc}).") from None


def _too_large(width: int, height: int) -> str:
    return (
        f"This image is {width:,} x {height:,} pixels, larger than the {MAX_PIXELS:,} "
        "pixels the appliance reads; scan it at a lower resolution."
    )


def render_pdf_page(page: Any) -> Any:
    """A PDF page as a PIL image at OCR resolution, scaled down when it would be huge."""
    width, height = page.get_size()  # in points (1/72 inch)
    scale = OCR_DPI / 72
    pixels = width * height * scale * scale
    if pixels > MAX_PIXELS:
        scale *= (MAX_PIXELS / pixels) ** 0.5
    bitmap = page.render(scale=scale, grayscale=True)
    try:
        return bitmap.to_pil().copy()  # the PIL view shares the bitmap's buffer
    finally:
        bitmap.close()
