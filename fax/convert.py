"""Documents to a fax: PDFs through ghostscript, images (PNG, JPEG, TIFF of any pages)
through Pillow, into one TIFF-F file: 1728 px wide, 204x196 dpi ("fine") or 204x98
("normal"), A4 or US Letter pages, Group 3. Blocking: the callers run it in a thread.

Every input is bounded before it costs anything: its size (checked by the API), its
pages (ghostscript renders at most ``max_pages`` + 1, images are counted first), its
pixels (Pillow's decompression-bomb guard), ghostscript's time, and -dSAFER.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from PIL import Image, ImageOps, UnidentifiedImageError

WIDTH = 1728  # px: every fax machine's line
RESOLUTIONS = {"fine": (204, 196), "normal": (204, 98)}
# A fax line is 1728 px at 204 dpi, 8.47 in, whatever the paper; pages are as long as it.
PAPERS = {"a4": (8.47, 11.69), "letter": (8.47, 11.0)}
GS_SECONDS = 120
Resolution = Literal["fine", "normal"]
Paper = Literal["a4", "letter"]


class ConversionError(ValueError):
    """The document cannot be a fax: what is wrong, in words for the sender."""


@dataclass(frozen=True, slots=True)
class Converted:
    pages: int
    resolution: str


def kind_of(head: bytes) -> str | None:
    """The document's kind by its first bytes (never by its name)."""
    if head.startswith(b"%PDF-"):
        return "pdf"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    return None


def to_fax(
    documents: list[Path],
    out: Path,
    resolution: Resolution,
    *,
    max_pages: int,
    paper: Paper = "a4",
) -> Converted:
    """Convert ``documents`` (in order) into the one TIFF-F ``out``."""
    dpi = RESOLUTIONS[resolution]
    height = round(PAPERS[paper][1] * dpi[1])
    pages: list[Image.Image] = []
    with tempfile.TemporaryDirectory(prefix="cti-fax-") as scratch:
        for index, document in enumerate(documents):
            kind = kind_of(document.read_bytes()[:8])
            if kind is None:
                raise ConversionError(f"file {index + 1} is not a PDF, PNG, JPEG or TIFF")
            room = max_pages - len(pages)
            if kind == "pdf":
                rendered = Path(scratch) / f"{index}.tif"
                _ghostscript(document, rendered, dpi, room + 1, PAPERS[paper])
                source = rendered
            else:
                source = document
            pages += _pages(source, dpi, height, room, index)
        if not pages:
            raise ConversionError("the document has no pages")
        tmp = out.with_suffix(".part")
        pages[0].save(
            tmp,
            "TIFF",
            save_all=True,
            append_images=pages[1:],
            compression="group3",
            dpi=dpi,
        )
        tmp.replace(out)
    return Converted(len(pages), f"{dpi[0]}x{dpi[1]}")


def _ghostscript(
    pdf: Path, out: Path, dpi: tuple[int, int], last_page: int, inches: tuple[float, float]
) -> None:
    gs = shutil.which("gs")
    if gs is None:
        raise ConversionError("ghostscript (gs) is not installed: PDFs cannot be faxed")
    width_pt, height_pt = (round(side * 72) for side in inches)
    command = [
        gs,
        "-q",
        "-dSAFER",
        "-dBATCH",
        "-dNOPAUSE",
        "-sDEVICE=tiffg3",
        f"-r{dpi[0]}x{dpi[1]}",
        f"-dDEVICEWIDTHPOINTS={width_pt}",
        f"-dDEVICEHEIGHTPOINTS={height_pt}",
        "-dFIXEDMEDIA",
        "-dPDFFitPage",
        f"-dLastPage={last_page}",
        f"-sOutputFile={out}",
        str(pdf),
    ]
    try:
        done = subprocess.run(  # noqa: S603 (fixed arguments; the file is ours)
            command, capture_output=True, timeout=GS_SECONDS, check=False
        )
    except subprocess.TimeoutExpired:
        raise ConversionError(f"the PDF took more than {GS_SECONDS} s to render") from None
    if done.returncode != 0 or not out.exists():
        words = done.stderr.decode("utf-8", "replace").strip().splitlines()
        detail = words[-1][:200] if words else f"exit status {done.returncode}"
        raise ConversionError(f"ghostscript cannot render this PDF: {detail}")


def _pages(
    source: Path, dpi: tuple[int, int], height: int, room: int, index: int
) -> list[Image.Image]:
    """The file's pages as fax pages: at most ``room`` of them, else an error."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(source) as image:
                count = getattr(image, "n_frames", 1)
                if count > room:
                    raise ConversionError(f"more pages than the {room + 0} still allowed")
                pages = []
                for frame in range(count):
                    image.seek(frame)
                    pages.append(_fax_page(image, _dpi(image), dpi, height))
                return pages
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        raise ConversionError(f"file {index + 1} cannot be read as an image: {e}") from None


def _dpi(image: Image.Image) -> tuple[float, float]:
    x, y = image.info.get("dpi") or (0, 0)
    return (float(x), float(y))


def _fax_page(
    image: Image.Image, source_dpi: tuple[float, float], dpi: tuple[int, int], height: int
) -> Image.Image:
    """Scaled to fit a fax page (aspect kept, as the page was drawn), white around it,
    one bit a pixel."""
    gray = ImageOps.exif_transpose(image).convert("L")
    sx, sy = source_dpi if all(source_dpi) else (1.0, 1.0)
    # The picture's shape in inches (or as is, without dpi), then in fax pixels.
    width_in, height_in = gray.width / sx, gray.height / sy
    scale = min(WIDTH / (width_in * dpi[0]), height / (height_in * dpi[1]))
    size = (max(1, round(width_in * dpi[0] * scale)), max(1, round(height_in * dpi[1] * scale)))
    page = Image.new("L", (WIDTH, height), 255)
    page.paste(gray.resize(size, Image.Resampling.LANCZOS), ((WIDTH - size[0]) // 2, 0))
    return page.convert("1")
