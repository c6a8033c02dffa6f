"""Words the pages need, checked without a browser."""

from pathlib import Path

from cti.events import DIAL_FAILURES


def test_every_click_to_dial_failure_has_words_in_every_language() -> None:
    """The desk words a failed click-to-dial by its code ("you did not answer", D4)."""
    text = (Path(__file__).parents[1] / "cti" / "web" / "i18n.js").read_text(encoding="utf-8")
    for code in DIAL_FAILURES:
        assert text.count(f"    dial_{code}: ") == 2, code  # en and ru
