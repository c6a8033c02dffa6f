"""Files named by a relative path under a folder, and never anything outside it."""

from __future__ import annotations

from pathlib import Path, PurePosixPath


def inside(root: Path, relative: str) -> Path | None:
    """What ``relative`` names under ``root`` (symlinks resolved); None when it is empty,
    absolute, has ``..`` or NUL, or leads out of ``root`` (a symlink pointing away)."""
    if not relative or "\x00" in relative:
        return None
    path = PurePosixPath(relative)
    if path.is_absolute() or ".." in path.parts:
        return None
    try:
        base = root.resolve()
        target = (base / path).resolve()
    except (OSError, RuntimeError):  # a symlink loop
        return None
    return target if target.is_relative_to(base) else None
