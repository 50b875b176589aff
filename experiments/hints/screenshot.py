"""The README's screenshot of ``colorize serve`` (docs/serve.jpg): the page in headless Chromium
with a trained hint model, a photo it never saw and two colour hints.

    python experiments/hints/screenshot.py            # needs runs/hints (run.py --train) and chromium
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import threading
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PHOTO = ROOT.parent / "shared" / "data" / "bsds500" / "test" / "100007.jpg"
HINTS = ((0.5, 0.25, "#d62728"), (0.2, 0.8, "#1f77b4"))  # (x, y) as shares of the shown photo, colour


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt-dir", type=Path, default=HERE / "runs" / "hints" / "checkpoints")
    parser.add_argument("--photo", type=Path, default=PHOTO)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "serve.jpg")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    from colorization.serve import ColorizeApp, make_server

    with tempfile.TemporaryDirectory() as folder:  # only last.ckpt, so the page shows one choice
        shutil.copy(args.ckpt_dir / "last.ckpt", Path(folder) / "hints_unet.ckpt")
        app = ColorizeApp(folder, device="cpu")
        server = make_server(app, "127.0.0.1", 0)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        executable = shutil.which("chromium") or shutil.which("chromium-browser")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1100, "height": 640})
            page.goto(f"http://127.0.0.1:{server.server_address[1]}/")
            page.wait_for_selector("#checkpoint option", state="attached")
            page.set_input_files("#file", str(args.photo))
            page.wait_for_function("document.body.dataset.done === '1'", timeout=120_000)
            for done, (x, y, colour) in enumerate(HINTS, start=2):
                page.eval_on_selector("#color", f"(el) => {{ el.value = '{colour}'; }}")
                box = page.locator("#gray").bounding_box()
                page.mouse.click(box["x"] + x * box["width"], box["y"] + y * box["height"])
                page.wait_for_function(f"document.body.dataset.done === '{done}'", timeout=120_000)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.out), full_page=True, quality=85)
            browser.close()
        server.shutdown()
        app.close()
    print(f"screenshot: {args.out}")


if __name__ == "__main__":
    main()
