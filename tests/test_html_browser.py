"""The HTML report as a browser draws it: headless Chromium (Debian's ``chromium`` package) screenshots the
page of a profile and of a compare file, offline, and the screenshots are not blank.  Run with
``pytest -m browser``; skipped only where chromium is not installed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

import memview_records as hand
from gonprof.records import save_records
from gonprof.render.html import results_html
from gonprof.render.timeline import CATEGORY_COLOURS

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def screenshot(page: Path, png: Path, tmp_path: Path, size: str = "1200,2000") -> None:
    """``page`` drawn by headless Chromium into ``png`` (no network, a fresh profile, no GPU)."""
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    profile = tmp_path / "chromium-profile"
    r = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                        "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
                        f"--screenshot={png}", f"--window-size={size}", page.resolve().as_uri()],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and png.exists(), r.stderr[-2000:]


def _colours(png: Path) -> set[tuple[int, int, int]]:
    from PIL import Image

    with Image.open(png) as im:
        return {c for _, c in im.convert("RGB").getcolors(1 << 22)}


def _hex(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


@pytest.mark.parametrize("kind", ["profile", "compare"])
def test_chromium_draws_the_page(tmp_path, kind):
    records = [hand.profile()] if kind == "profile" else hand.compare_rows()
    save_records(records, tmp_path / "r.json")
    page = tmp_path / "r.html"
    page.write_text(results_html(tmp_path / "r.json"))
    png = tmp_path / "r.png"
    screenshot(page, png, tmp_path)
    colours = _colours(png)
    assert len(colours) > 20, "the screenshot is blank"
    if kind == "profile":
        # the module bars are drawn opaque: parameters, activations and external bytes in their own colours
        for category in ("param", "act", "external"):
            assert _hex(CATEGORY_COLOURS[category]) in colours, category
    else:
        assert _hex("#D55E00") in colours  # the Pareto-optimal row's star
