"""Documents to fax, made on the spot (Pillow writes PDFs too): for the fax tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PIL import Image, ImageDraw


def page(n: int, size: tuple[int, int] = (1240, 1754)) -> Image.Image:
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    draw.text((100, 100), f"Fax page {n}: Договор, ხელშეკრულება", fill="black")
    draw.rectangle((100, 300, size[0] - 100, size[1] - 300), outline="black", width=8)
    return image


def pdf(path: Path, pages: int = 2) -> Path:
    images = [page(n + 1) for n in range(pages)]
    images[0].save(path, "PDF", save_all=True, append_images=images[1:], resolution=150)
    return path


def tiff(path: Path, pages: int = 2) -> Path:
    """A multi-page TIFF (no ghostscript needed, unlike a PDF)."""
    images = [page(n + 1) for n in range(pages)]
    images[0].save(path, save_all=True, append_images=images[1:])
    return path


needs_ghostscript = pytest.mark.skipif(
    shutil.which("gs") is None, reason="PDFs need ghostscript: apt-get install ghostscript"
)
