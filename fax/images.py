"""A fax's pages as images, with Pillow (its libtiff reads Group 3 and 4): how many pages
and at what resolution, a PDF of them for people, a thumbnail of the first page.

Blocking work on files: the callers run it in a thread.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

THUMBNAIL = (240, 340)  # px, about an A4 page's shape
Image.MAX_IMAGE_PIXELS = 40_000_000  # a fax page is 1728 x 2300 or so: refuse a bomb


class NotAFax(Exception):
    """The file is no image Pillow can read, or is beyond the limits."""


@dataclass(frozen=True, slots=True)
class FaxImages:
    pages: int
    resolution: str  # "204x196" (dpi across x down)


def render(tiff: Path, pdf: Path, thumbnail: Path, *, max_pages: int) -> FaxImages:
    """Read ``tiff`` and write ``pdf`` (each page at its own resolution, so a
    204x98 "normal" page is not squashed) and ``thumbnail`` (PNG)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns of what it then refuses anyway
            pages = _pages(tiff, max_pages)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        raise NotAFax(f"not a fax image: {e}") from None
    first, dpi = pages[0]
    _save_pdf(pdf, pages)
    small = first.convert("L")
    small.thumbnail(THUMBNAIL, Image.Resampling.LANCZOS)
    small.save(thumbnail, "PNG", optimize=True)
    return FaxImages(len(pages), f"{round(dpi[0])}x{round(dpi[1])}")


def _pages(tiff: Path, max_pages: int) -> list[tuple[Image.Image, tuple[float, float]]]:
    with Image.open(tiff) as image:
        count = getattr(image, "n_frames", 1)
        if count > max_pages:
            raise NotAFax(f"{count} pages, more than the {max_pages} allowed")
        pages = []
        for index in range(count):
            image.seek(index)
            pages.append((image.convert("1"), _dpi(image)))
        return pages


def _dpi(image: Image.Image) -> tuple[float, float]:
    x, y = image.info.get("dpi") or (204, 196)
    return (float(x) or 204.0, float(y) or 196.0)


def _save_pdf(pdf: Path, pages: list[tuple[Image.Image, tuple[float, float]]]) -> None:
    """One PDF page per fax page; Pillow's PDF writer takes one dpi for all pages, so
    pages of another resolution are resampled to the first one's."""
    first, dpi = pages[0]
    rest = []
    for page, page_dpi in pages[1:]:
        if page_dpi != dpi:
            size = (
                round(page.width * dpi[0] / page_dpi[0]),
                round(page.height * dpi[1] / page_dpi[1]),
            )
            page = page.resize(size)
        rest.append(page)
    tmp = pdf.with_suffix(".part")
    first.save(tmp, "PDF", save_all=True, append_images=rest, dpi=dpi)
    tmp.replace(pdf)
