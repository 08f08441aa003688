"""Build the demo organisation's documents from their text sources.

    .venv/bin/python deploy/demo/build.py           # (re)writes deploy/demo/documents/
    .venv/bin/python deploy/demo/build.py --check   # exits 1 when a built file would change

Each file in ``sources/`` is a small Markdown text with TOML front matter between ``+++``
lines; ``output`` names the file to build, and its extension picks the writer:

- ``.pdf``: a Word file (python-docx) converted by LibreOffice (``soffice``); each
  ``<<<pagebreak>>>`` starts a new page, and the page count is checked. Pages listed in
  ``scanned_pages`` are replaced by a picture of their text (Pillow), with no text layer,
  as a scanner would deliver them.
- ``.docx``, ``.pptx``, ``.xlsx``: python-docx, python-pptx, openpyxl. In a workbook each
  ``##`` heading is a sheet.
- ``.eml``: the text is the message body; ``attachments`` names other sources.
- ``.html``, ``.md``, ``.txt``, ``.csv``: written as text.

A source with ``attachment_only = true`` is built only to be attached to an e-mail.
Dates, metadata and zip timestamps are fixed, so building twice gives the same bytes
(with the same LibreOffice and library versions).
"""

from __future__ import annotations

import argparse
import csv
import html
import io
import mimetypes
import random
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from email.policy import default as email_policy
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCES = HERE / "sources"
DOCUMENTS = HERE / "documents"

# Every built file says it was made on this date, whenever it is rebuilt.
FIXED_DATE = datetime(2025, 4, 1, 8, 0, 0)
ZIP_DATE = (2025, 4, 1, 8, 0, 0)
PDF_DATE = "D:20250401080000Z"
AUTHOR = "Fjordvik kommune"
PAGEBREAK = "<<<pagebreak>>>"
LANGUAGE_TAGS = {"en": "en-GB", "nb": "nb-NO"}
FONT_DIRS = [Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/dejavu")]


# --- sources -------------------------------------------------------------------------


@dataclass
class Block:
    kind: str  # title, heading, subheading, paragraph, bullets, numbers, table, pagebreak
    text: str = ""
    items: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)


@dataclass
class Source:
    path: Path
    meta: dict
    body: str

    @property
    def output(self) -> str:
        return str(self.meta["output"])

    @property
    def suffix(self) -> str:
        return Path(self.output).suffix.lower()

    @property
    def title(self) -> str:
        return str(self.meta.get("title", Path(self.output).stem))

    @property
    def language(self) -> str:
        return LANGUAGE_TAGS.get(str(self.meta.get("language", "en")), "en-GB")

    def blocks(self) -> list[Block]:
        return parse_blocks(self.body)


def read_source(path: Path) -> Source:
    text = path.read_text(encoding="utf-8")
    match = re.match(r"\A\+\+\+\n(.*?)\n\+\+\+\n", text, re.DOTALL)
    if not match:
        raise SystemExit(f"{path.name}: no +++ front matter")
    meta = tomllib.loads(match.group(1))
    if "output" not in meta:
        raise SystemExit(f"{path.name}: the front matter names no output")
    return Source(path, meta, text[match.end() :].strip("\n") + "\n")


def parse_blocks(body: str) -> list[Block]:
    """The small Markdown subset the sources use: #, ## and ### headings, paragraphs,
    "- " and "1. " lists, pipe tables and page breaks."""
    blocks: list[Block] = []
    paragraph: list[str] = []
    current: Block | None = None  # the list or table being filled

    def flush() -> None:
        nonlocal current
        if paragraph:
            blocks.append(Block("paragraph", " ".join(paragraph)))
            paragraph.clear()
        current = None

    for raw in body.splitlines():
        line = raw.strip()
        numbered = re.match(r"\d+\.\s+(.*)", line)
        if not line:
            flush()
        elif line == PAGEBREAK:
            flush()
            blocks.append(Block("pagebreak"))
        elif line.startswith(("# ", "## ", "### ")):
            flush()
            level, text = line.split(" ", 1)
            kind = {"#": "title", "##": "heading", "###": "subheading"}[level]
            blocks.append(Block(kind, text.strip()))
        elif line.startswith("- ") or numbered:
            kind = "bullets" if line.startswith("- ") else "numbers"
            item = line[2:].strip() if kind == "bullets" else numbered.group(1)  # type: ignore[union-attr]
            if current is None or current.kind != kind:
                flush()
                current = Block(kind)
                blocks.append(current)
            current.items.append(item)
        elif line.startswith("|"):
            if current is None or current.kind != "table":
                flush()
                current = Block("table")
                blocks.append(current)
            cells = [c.strip() for c in line.strip("|").split("|")]
            if not all(re.fullmatch(r":?-+:?", c) for c in cells):
                current.rows.append(cells)
        else:
            if current is not None:
                flush()
            paragraph.append(line)
    flush()
    return blocks


def pages(blocks: list[Block]) -> list[list[Block]]:
    found: list[list[Block]] = [[]]
    for block in blocks:
        if block.kind == "pagebreak":
            found.append([])
        else:
            found[-1].append(block)
    return found


def runs(text: str) -> Iterator[tuple[str, bool]]:
    """(text, bold) pieces of a line with **bold** in it."""
    for index, piece in enumerate(re.split(r"\*\*", text)):
        if piece:
            yield piece, index % 2 == 1


def plain(text: str) -> str:
    return text.replace("**", "")


# --- zip-based formats ---------------------------------------------------------------

_CORE_DATES = re.compile(rb"(<dcterms:(?:created|modified)[^>]*>)[^<]*(</dcterms:)")


def normalise_zip(data: bytes) -> bytes:
    """The same archive with fixed timestamps, so that a rebuild changes nothing."""
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            content = source.read(info.filename)
            if info.filename == "docProps/core.xml":
                stamp = FIXED_DATE.strftime("%Y-%m-%dT%H:%M:%SZ").encode()
                content = _CORE_DATES.sub(rb"\g<1>" + stamp + rb"\g<2>", content)
            fixed = zipfile.ZipInfo(info.filename, date_time=ZIP_DATE)
            fixed.compress_type = zipfile.ZIP_DEFLATED
            fixed.external_attr = 0o644 << 16
            target.writestr(fixed, content)
    return out.getvalue()


def set_core_properties(properties: object, source: Source) -> None:
    properties.title = source.title  # type: ignore[attr-defined]
    properties.subject = str(source.meta.get("subject", ""))  # type: ignore[attr-defined]
    properties.author = AUTHOR  # type: ignore[attr-defined]
    properties.last_modified_by = AUTHOR  # type: ignore[attr-defined]
    properties.created = FIXED_DATE  # type: ignore[attr-defined]
    properties.modified = FIXED_DATE  # type: ignore[attr-defined]
    properties.revision = 1  # type: ignore[attr-defined]
    properties.language = source.language  # type: ignore[attr-defined]


def build_docx(source: Source) -> bytes:
    import docx
    from docx.shared import Mm, Pt

    document = docx.Document()
    section = document.sections[0]
    section.page_width, section.page_height = Mm(210), Mm(297)
    section.left_margin = section.right_margin = Mm(25)
    section.top_margin = section.bottom_margin = Mm(22)
    for name, size in (("Normal", 10.5), ("Title", 22), ("Heading 1", 14), ("Heading 2", 12)):
        style = document.styles[name]
        style.font.name = "DejaVu Sans"
        style.font.size = Pt(size)
    for block in source.blocks():
        if block.kind == "title":
            document.add_heading(block.text, 0)
        elif block.kind in ("heading", "subheading"):
            document.add_heading(block.text, 1 if block.kind == "heading" else 2)
        elif block.kind == "paragraph":
            _add_runs(document.add_paragraph(), block.text)
        elif block.kind in ("bullets", "numbers"):
            style_name = "List Bullet" if block.kind == "bullets" else "List Number"
            for item in block.items:
                _add_runs(document.add_paragraph(style=style_name), item)
        elif block.kind == "table":
            table = document.add_table(rows=len(block.rows), cols=len(block.rows[0]))
            table.style = "Table Grid"
            for r, row in enumerate(block.rows):
                for c, value in enumerate(row):
                    cell = table.cell(r, c)
                    cell.text = ""
                    run = cell.paragraphs[0].add_run(plain(value))
                    run.bold = r == 0
            document.add_paragraph()
        elif block.kind == "pagebreak":
            document.add_page_break()
    set_core_properties(document.core_properties, source)
    out = io.BytesIO()
    document.save(out)
    return normalise_zip(out.getvalue())


def _add_runs(paragraph: object, text: str) -> None:
    for piece, bold in runs(text):
        paragraph.add_run(piece).bold = bold  # type: ignore[attr-defined]


def build_pptx(source: Source) -> bytes:
    from pptx import Presentation

    deck = Presentation()
    slide = None
    body = None
    for block in source.blocks():
        if block.kind == "title":
            slide = deck.slides.add_slide(deck.slide_layouts[0])
            slide.shapes.title.text = block.text
            body = slide.placeholders[1].text_frame
            body.text = ""
        elif block.kind == "heading":
            slide = deck.slides.add_slide(deck.slide_layouts[1])
            slide.shapes.title.text = block.text
            body = slide.placeholders[1].text_frame
            body.text = ""
        elif body is None:
            raise SystemExit(f"{source.path.name}: text before the first slide heading")
        else:
            lines = block.items if block.kind in ("bullets", "numbers") else [block.text]
            for line in lines:
                paragraph = body.paragraphs[0] if not body.text else body.add_paragraph()
                paragraph.text = plain(line)
    set_core_properties(deck.core_properties, source)
    out = io.BytesIO()
    deck.save(out)
    return normalise_zip(out.getvalue())


def cell_value(text: str) -> int | float | str | None:
    if not text:
        return None
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    if re.fullmatch(r"-?\d+\.\d+", text):
        return float(text)
    return plain(text)


def build_xlsx(source: Source) -> bytes:
    from openpyxl import Workbook
    from openpyxl.styles import Font

    workbook = Workbook()
    workbook.remove(workbook.active)
    sheet = None
    row = 1
    for block in source.blocks():
        if block.kind == "heading":
            sheet = workbook.create_sheet(block.text[:31])
            row = 1
            continue
        if sheet is None:
            raise SystemExit(f"{source.path.name}: text before the first sheet heading")
        if block.kind == "paragraph":
            sheet.cell(row, 1, plain(block.text)).font = Font(
                bold=row == 1, size=13 if row == 1 else 11
            )
            row += 1
        elif block.kind == "table":
            if row > 1:
                row += 1
            for r, cells in enumerate(block.rows):
                total = cells[0].lower() == "total"
                for c, text in enumerate(cells, start=1):
                    value = cell_value(text)
                    cell = sheet.cell(row, c, value)
                    cell.font = Font(bold=r == 0 or total)
                    if isinstance(value, int):
                        cell.number_format = "#,##0"
                    elif isinstance(value, float):
                        decimals = len(text.split(".")[1])
                        cell.number_format = "0." + "0" * decimals
                row += 1
    for sheet in workbook.worksheets:
        for column in sheet.columns:
            widest = max(len(str(c.value)) for c in column if c.value is not None)
            # A title row should not make the first column wide.
            body = [len(str(c.value)) for c in column[2:] if c.value is not None]
            width = max(body) if body else widest
            sheet.column_dimensions[column[0].column_letter].width = min(width + 4, 60)
    props = workbook.properties
    props.creator = props.lastModifiedBy = AUTHOR
    props.title = source.title
    props.subject = str(source.meta.get("subject", ""))
    props.language = source.language
    props.created = props.modified = FIXED_DATE
    out = io.BytesIO()
    workbook.save(out)
    return normalise_zip(out.getvalue())


# --- text formats --------------------------------------------------------------------


def build_text(source: Source) -> bytes:
    return source.body.encode("utf-8")


def build_csv(source: Source) -> bytes:
    rows = next(block.rows for block in source.blocks() if block.kind == "table")
    out = io.StringIO()
    # Semicolons, as Excel with Norwegian settings writes and reads them.
    csv.writer(out, delimiter=";", lineterminator="\n").writerows(rows)
    return out.getvalue().encode("utf-8")


def build_html(source: Source) -> bytes:
    def inline(text: str) -> str:
        return "".join(
            f"<strong>{html.escape(p)}</strong>" if bold else html.escape(p)
            for p, bold in runs(text)
        )

    parts: list[str] = []
    for block in source.blocks():
        if block.kind == "title":
            parts.append(f"<h1>{inline(block.text)}</h1>")
        elif block.kind == "heading":
            parts.append(f"<h2>{inline(block.text)}</h2>")
        elif block.kind == "subheading":
            parts.append(f"<h3>{inline(block.text)}</h3>")
        elif block.kind == "paragraph":
            parts.append(f"<p>{inline(block.text)}</p>")
        elif block.kind in ("bullets", "numbers"):
            tag = "ul" if block.kind == "bullets" else "ol"
            items = "".join(f"\n  <li>{inline(i)}</li>" for i in block.items)
            parts.append(f"<{tag}>{items}\n</{tag}>")
        elif block.kind == "table":
            head = "".join(f"<th>{inline(c)}</th>" for c in block.rows[0])
            body = "".join(
                "\n  <tr>" + "".join(f"<td>{inline(c)}</td>" for c in row) + "</tr>"
                for row in block.rows[1:]
            )
            parts.append(f"<table>\n  <tr>{head}</tr>{body}\n</table>")
    language = source.language.split("-")[0]
    page = (
        "<!DOCTYPE html>\n"
        f'<html lang="{language}">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(source.title)} \N{EN DASH} Fjordvik kommune</title>\n"
        "</head>\n<body>\n" + "\n".join(parts) + "\n</body>\n</html>\n"
    )
    return page.encode("utf-8")


def build_eml(source: Source, built: dict[str, bytes]) -> bytes:
    message = EmailMessage()
    message["From"] = source.meta["from"]
    message["To"] = source.meta["to"]
    message["Date"] = source.meta["date"]
    message["Subject"] = source.title
    message["Message-ID"] = source.meta["message_id"]
    message.set_content(source.body, cte="quoted-printable")
    for name in source.meta.get("attachments", []):
        kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
        maintype, subtype = kind.split("/")
        if maintype == "text":
            message.add_attachment(built[name].decode("utf-8"), subtype=subtype, filename=name)
        else:
            message.add_attachment(built[name], maintype, subtype, filename=name)
    if message.is_multipart():
        message.set_boundary(f"=_fjordvik-{Path(source.output).stem}")
    return message.as_bytes(policy=email_policy)


# --- PDF -----------------------------------------------------------------------------


def build_pdf(source: Source, workdir: Path) -> bytes:
    from pypdf import PdfReader, PdfWriter

    blocks = source.blocks()
    expected_pages = sum(1 for b in blocks if b.kind == "pagebreak") + 1
    stem = Path(source.output).stem
    word = workdir / f"{stem}.docx"
    word.write_bytes(build_docx(source))
    soffice = shutil.which("soffice") or shutil.which("libreoffice")
    if soffice is None:
        raise SystemExit("Building the PDFs needs LibreOffice (soffice); install it first.")
    subprocess.run(
        [
            soffice,
            f"-env:UserInstallation=file://{workdir}/profile",
            "--headless",
            "--convert-to",
            "pdf:writer_pdf_Export",
            "--outdir",
            str(workdir),
            str(word),
        ],
        check=True,
        capture_output=True,
        timeout=180,
    )
    reader = PdfReader(workdir / f"{stem}.pdf")
    if len(reader.pages) != expected_pages:
        raise SystemExit(
            f"{source.output}: LibreOffice made {len(reader.pages)} pages, the source has "
            f"{expected_pages}: shorten the page that runs over, so that page numbers in "
            "golden.csv stay right"
        )
    scanned = {int(n) for n in source.meta.get("scanned_pages", [])}
    by_page = pages(blocks)
    writer = PdfWriter()
    for number, page in enumerate(reader.pages, start=1):
        if number in scanned:
            picture = PdfReader(io.BytesIO(scanned_page(by_page[number - 1], seed=number)))
            writer.add_page(picture.pages[0])
        else:
            writer.add_page(page)
    writer.add_metadata(
        {
            "/Title": source.title,
            "/Author": AUTHOR,
            "/Subject": str(source.meta.get("subject", "")),
            "/Creator": "deploy/demo/build.py",
            "/Producer": "LibreOffice, Pillow and pypdf",
            "/CreationDate": PDF_DATE,
            "/ModDate": PDF_DATE,
        }
    )
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def _font(name: str, size: int) -> object:
    from PIL import ImageFont

    for folder in FONT_DIRS:
        if (folder / name).is_file():
            return ImageFont.truetype(str(folder / name), size)
    raise SystemExit(f"The scanned page needs the DejaVu fonts ({name}); install fonts-dejavu.")


def scanned_page(blocks: list[Block], seed: int) -> bytes:
    """One A4 page as a 150 dpi black-and-white picture of its text, slightly crooked and
    speckled, saved as a PDF page without any text layer: only OCR can read it."""
    from PIL import Image, ImageDraw

    width, height, margin = 1240, 1754, 140
    paper = Image.new("L", (width, height), 252)
    draw = ImageDraw.Draw(paper)
    body, bold = _font("DejaVuSerif.ttf", 24), _font("DejaVuSerif-Bold.ttf", 27)
    y = 170
    for block in blocks:
        if block.kind in ("title", "heading", "subheading"):
            y += 18
            lines, font = [plain(block.text)], bold
        elif block.kind in ("bullets", "numbers"):
            lines, font = [f"\N{EN DASH} {plain(i)}" for i in block.items], body
        elif block.kind == "paragraph":
            lines, font = [plain(block.text)], body
        else:
            raise SystemExit(f"a scanned page cannot show a {block.kind}")
        for text in lines:
            for line in _wrap(draw, text, font, width - 2 * margin):
                draw.text((margin, y), line, fill=25, font=font)
                y += 38
        y += 22
    if y > height - margin:
        raise SystemExit("the scanned page's text does not fit on one page")
    rng = random.Random(seed)
    for _ in range(400):  # dust on the scanner glass
        x, yy = rng.randrange(width), rng.randrange(height)
        draw.point([(x, yy), (x + 1, yy)], fill=rng.randrange(90, 200))
    paper = paper.rotate(0.4, resample=Image.Resampling.BICUBIC, fillcolor=252)
    black_white = paper.point(lambda v: 0 if v < 150 else 255).convert("1", dither=None)
    out = io.BytesIO()
    black_white.save(out, "PDF", resolution=150)
    return out.getvalue()


def _wrap(draw: object, text: str, font: object, room: int) -> list[str]:
    lines: list[str] = []
    line = ""
    for word in text.split():
        candidate = f"{line} {word}".strip()
        if line and draw.textlength(candidate, font=font) > room:  # type: ignore[attr-defined]
            lines.append(line)
            line = word
        else:
            line = candidate
    return [*lines, line] if line else lines


# --- the whole build -----------------------------------------------------------------


def build_all(workdir: Path) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """(documents, attachments) by file name."""
    sources = [read_source(p) for p in sorted(SOURCES.glob("*.md"))]
    attachments: dict[str, bytes] = {}
    documents: dict[str, bytes] = {}
    for source in sorted(sources, key=lambda s: not s.meta.get("attachment_only", False)):
        suffix = source.suffix
        if suffix == ".pdf":
            data = build_pdf(source, workdir)
        elif suffix == ".docx":
            data = build_docx(source)
        elif suffix == ".pptx":
            data = build_pptx(source)
        elif suffix == ".xlsx":
            data = build_xlsx(source)
        elif suffix == ".eml":
            data = build_eml(source, attachments)
        elif suffix == ".html":
            data = build_html(source)
        elif suffix == ".csv":
            data = build_csv(source)
        elif suffix in (".md", ".txt"):
            data = build_text(source)
        else:
            raise SystemExit(f"{source.path.name}: no writer for {suffix} files")
        target = attachments if source.meta.get("attachment_only") else documents
        if source.output in target:
            raise SystemExit(f"{source.output} is built by two sources")
        target[source.output] = data
    return documents, attachments


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--check", action="store_true", help="change nothing; exit 1 when a file would change"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fjordvik-demo-") as tmp:
        documents, _ = build_all(Path(tmp))
    existing = {p.name for p in DOCUMENTS.iterdir() if p.is_file()} if DOCUMENTS.exists() else set()
    changed = sorted(
        name
        for name, data in documents.items()
        if not (DOCUMENTS / name).is_file() or (DOCUMENTS / name).read_bytes() != data
    )
    stale = sorted(existing - set(documents))
    if args.check:
        for name in changed:
            print(f"would change: {name}")
        for name in stale:
            print(f"would remove: {name}")
        return 1 if changed or stale else 0
    DOCUMENTS.mkdir(exist_ok=True)
    for name in changed:
        (DOCUMENTS / name).write_bytes(documents[name])
        print(f"wrote {name}")
    for name in stale:
        (DOCUMENTS / name).unlink()
        print(f"removed {name}")
    total = sum(len(d) for d in documents.values())
    print(f"{len(documents)} documents, {total / 1024:.0f} KiB, {len(changed)} changed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
