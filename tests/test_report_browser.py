"""The report and the compare page as a reader at 1,280 px sees them, in headless Chromium
(Playwright driving Debian's /usr/bin/chromium): screenshot, the main comparison tables
inside the page width (the size column visible), every figure loaded, long sections closed."""

from __future__ import annotations

from pathlib import Path

import pytest

from reports import write_report
from reports.compare import write as write_compare
from test_recommend import with_ensemble

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [pytest.mark.skipif(not CHROMIUM.exists(), reason="chromium not installed"),
              pytest.mark.slow]  # a browser per test: CI only
sync_api = pytest.importorskip("playwright.sync_api")

WIDTH = 1280

#: per selector: the box's right edge, its content width vs visible width, and the page's
LAYOUT = """sel => {
  const out = {page: document.documentElement.scrollWidth, images: [], boxes: {}};
  for (const img of document.images) out.images.push({ok: img.complete && img.naturalWidth > 0, alt: img.alt});
  for (const t of document.querySelectorAll(sel)) {
    const box = t.closest('.wide') || t;
    const last = t.querySelector('thead tr:last-child th:last-child').getBoundingClientRect();
    out.boxes[t.dataset.table] = {scroll: box.scrollWidth, client: box.clientWidth, lastRight: last.right};
  }
  return out;
}"""


def _inspect(html: Path, png: Path, selector: str) -> dict:
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": WIDTH, "height": 900})
            page.goto(html.resolve().as_uri(), wait_until="load")
            layout = page.evaluate(LAYOUT, selector)
            layout["open_details"] = page.evaluate(  # open and visible: not inside a closed <details>
                "() => [...document.querySelectorAll('details[open]')]"
                ".filter(d => !d.parentElement.closest('details:not([open])')).length")
            layout["height"] = page.evaluate("() => document.documentElement.scrollHeight")
            page.screenshot(path=str(png), full_page=True)
        finally:
            browser.close()
    assert png.stat().st_size > 10_000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return layout


def _fits(layout: dict, tables: list[str]) -> None:
    assert layout["page"] <= WIDTH, layout  # no sideways scrolling of the page
    for name in tables:
        box = layout["boxes"][name]
        # the table's own box does not scroll and its last column (Size MB) ends inside the viewport
        assert box["scroll"] <= box["client"], (name, box)
        assert box["lastRight"] <= WIDTH, (name, box)
    assert layout["images"] and all(i["ok"] for i in layout["images"]), layout["images"]


def test_report_at_1280px(tmp_path):
    path = write_report(with_ensemble(), tmp_path / "run")
    layout = _inspect(path, tmp_path / "report.png", "table.metrics[data-table]")
    _fits(layout, ["front", "test-micro", "test-macro"])
    # the what-to-ship figure is among those loaded; every long section opens closed
    assert any("throughput" in i["alt"] for i in layout["images"])
    assert layout["open_details"] == 0


def test_compare_page_at_1280px(tmp_path):
    runs = []
    for name in ("before", "after"):
        folder = tmp_path / name
        folder.mkdir()
        with_ensemble().save(folder)
        runs.append(folder)
    html, _ = write_compare(runs, tmp_path / "cmp.html", tmp_path / "cmp.md")
    layout = _inspect(html, tmp_path / "compare.png", "table[data-table='compare']")
    _fits(layout, ["compare"])
