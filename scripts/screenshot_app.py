"""Screenshots of every tab of the app into ``docs/`` (headless Chromium via Playwright).

    python scripts/screenshot_app.py [--out docs] [--chromium /usr/bin/chromium]

Starts the app in-process on 127.0.0.1, loads example scene 24, clicks the red star and the
blue circle, then runs each tab and saves ``app_<tab>.png`` (and the Generate panel's images,
``app_generate.png``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def wait_text(page, selector: str, text: str, timeout: float = 120_000) -> None:
    page.wait_for_function(
        "([s, t]) => { const e = document.querySelector(s); return e && e.innerText.includes(t); }",
        arg=[selector, text], timeout=timeout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs")
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    args = ap.parse_args()
    import torch
    from app_server import running_app
    from playwright.sync_api import sync_playwright
    from test_e2e_browser import click_image_pixel

    from regionlab.ui.examples import scene

    torch.set_num_threads(2)
    args.out.mkdir(parents=True, exist_ok=True)
    objs = {o.label: o for o in scene(24).objects}
    with running_app() as demo:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=args.chromium, headless=True, args=ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(demo.local_url)
            page.locator("#rl-examples .thumbnail-item").first.click()
            page.wait_for_function(
                "() => { const i = document.querySelector('#rl-canvas img');"
                " return i && i.complete && i.naturalWidth === 448; }", timeout=30_000)
            click_image_pixel(page, "#rl-canvas", *objs["red star"].center)
            wait_text(page, "body", "region 1")
            page.locator("#rl-new-region").click()
            time.sleep(1)
            click_image_pixel(page, "#rl-canvas", *objs["blue circle"].center)
            wait_text(page, "body", "region 2")
            time.sleep(1.5)
            page.screenshot(path=str(args.out / "app_regions.png"))
            # The notices (no SAM checkpoint, ...) stay in app_regions.png; hidden from the tab
            # screenshots below, where they covered the tab's description.
            page.add_style_tag(content=".toast-wrap { display: none !important; }")

            page.locator("#rl-invert").click()
            wait_text(page, "#rl-invert-status", "→")
            page.get_by_text("Compare region-embedding methods").click()
            page.locator("#rl-compare").click()
            wait_text(page, "#rl-compare-table", "maskinversion")
            page.get_by_text("How it works").first.click()
            time.sleep(1.5)
            page.locator("#rl-tabs").screenshot(path=str(args.out / "app_region_embedding.png"))

            page.get_by_text("Generate images from the region").click()
            page.locator("#rl-generate").click()
            page.wait_for_function(
                "() => document.querySelectorAll('#rl-generated img').length >= 6",
                timeout=120_000)
            time.sleep(2)
            page.locator("#rl-generated").scroll_into_view_if_needed()
            page.locator("#rl-generated").screenshot(path=str(args.out / "app_generate.png"))

            page.get_by_role("tab", name="Grounding").click()
            page.get_by_label("Referring expression").fill("the biggest triangle")
            page.locator("#rl-ground").click()
            wait_text(page, "#rl-ground-summary", "Chosen proposal")
            time.sleep(1.5)
            page.locator("#rl-tabs").screenshot(path=str(args.out / "app_grounding.png"))

            page.get_by_role("tab", name="Labelling").click()
            page.locator("#rl-label").click()
            wait_text(page, "#rl-label-table", "red star")
            time.sleep(1.5)
            page.locator("#rl-tabs").screenshot(path=str(args.out / "app_labelling.png"))

            page.get_by_role("tab", name="Export").click()
            page.locator("#rl-export").click()
            wait_text(page, "#rl-export-file", "regionlab_export")
            time.sleep(1)
            page.locator("#rl-tabs").screenshot(path=str(args.out / "app_export.png"))

            page.get_by_role("tab", name="Settings").click()
            page.get_by_text("Models and their availability").click()
            time.sleep(1.5)
            page.locator("#rl-tabs").screenshot(path=str(args.out / "app_settings.png"))

            page.get_by_role("tab", name="Brush").click()
            time.sleep(1.5)
            page.screenshot(path=str(args.out / "app_brush.png"))
            browser.close()
    print("\n".join(str(p) for p in sorted(args.out.glob("app_*.png"))))


if __name__ == "__main__":
    main()
