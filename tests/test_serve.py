"""``colorize serve``: the web page, over HTTP and in a real browser (headless Chromium)."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import threading
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from colorization.color import rgb_u8_to_lab
from colorization.serve import ColorizeApp, make_server
from tests.conftest import ROOT
from tests.helpers import tiny_checkpoint

#: the browser test's screenshot (a test artefact, not in git)
SCREENSHOT = ROOT / "tests" / "artifacts" / "serve_page.png"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The app on a free localhost port, with a hints checkpoint and a plain one to choose from."""
    folder = tmp_path_factory.mktemp("models")
    tiny_checkpoint(folder / "hints", "model.net.width=8", "model.net.depth=2", "model.hints=true")
    (folder / "outside").mkdir()
    app = ColorizeApp(folder, device="cpu", max_upload=200_000)
    httpd = make_server(app, "127.0.0.1", 0)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", app
    httpd.shutdown()
    httpd.server_close()
    app.close()


def post(url: str, body: bytes, content_type: str = "application/json") -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def upload(photo_bytes: bytes, name: str, checkpoint: str, hints: list | None = None) -> bytes:
    image = base64.b64encode(photo_bytes).decode()
    return json.dumps({"image": image, "filename": name, "checkpoint": checkpoint, "hints": hints or []}).encode()


def jpeg(photo: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def decode_data_url(url: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB"))


def test_api_colours_at_full_size_and_refuses_bad_requests(server, photos):
    base, app = server
    with urllib.request.urlopen(base + "/api/checkpoints") as reply:
        names = json.loads(reply.read())["checkpoints"]
    assert "hints/checkpoints/last.ckpt" in names and all(name.startswith("hints/") for name in names)
    photo = photos["chelsea"]
    status, result = post(base + "/api/colorize", upload(jpeg(photo), "cat.jpg", names[-1]))
    assert status == 200 and (result["width"], result["height"]) == (photo.shape[1], photo.shape[0])
    assert decode_data_url(result["colorized"]).shape == photo.shape
    bad = {
        "not an image": (upload(b"hello, not a photo", "notes.jpg", names[-1]), 400, "notes.jpg"),
        "corrupt": (upload(jpeg(photo)[:300], "cut.jpg", names[-1]), 400, "cut.jpg"),
        "too large": (upload(b"\xff" * 300_000, "huge.jpg", names[-1]), 413, "upload limit"),
        "not listed": (upload(jpeg(photo), "a.jpg", "../../etc/passwd.ckpt"), 400, "not one of the listed"),
        "bad hint": (upload(jpeg(photo), "a.jpg", names[-1], [{"x": 1, "color": "#fff"}]), 400, "point 0"),
        "not JSON": (b"{oops", 400, "not JSON"),
    }
    for case, (body, code, text) in bad.items():
        status, result = post(base + "/api/colorize", body)
        assert status == code and text in result["error"], (case, status, result)
        assert app.temp.name not in result["error"]  # the server's temporary paths are not shown
    # a body over the limit is refused from its Content-Length, before it is read
    status, result = post(base + "/api/colorize", b"x" * (app.max_upload * 4 // 3 + 2**20 + 1))
    assert status == 413 and "larger than the limit" in result["error"]
    assert list(Path(app.temp.name).iterdir()) == []  # every upload removed after its request
    # only the page itself may ask: not another site's page, not a rebound DNS name, not a form post
    body = upload(jpeg(photo), "cat.jpg", names[-1])
    for headers, code in (({"Origin": "http://evil.example"}, 403), ({"Host": "evil.example:80"}, 403),
                          ({"Content-Type": "text/plain"}, 415)):  # fmt: skip
        request = urllib.request.Request(base + "/api/colorize", data=body, method="POST",
                                         headers={"Content-Type": "application/json", **headers})  # fmt: skip
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=60)
        assert refused.value.code == code, headers
    # and the server keeps serving
    status, result = post(base + "/api/colorize", upload(jpeg(photo), "cat.jpg", names[-1]))
    assert status == 200


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def test_page_in_a_real_browser(server, photos, tmp_path):
    if chromium() is None:
        message = "needs Chromium (Debian: apt-get install chromium; .ci/run installs it)"
        pytest.fail(message) if os.environ.get("COLORIZATION_REQUIRE_BROWSER") else pytest.skip(message)
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (pip install playwright)")
    base, _ = server
    photo = photos["coffee"]
    Image.fromarray(photo).save(tmp_path / "coffee.png")
    (tmp_path / "notes.jpg").write_text("not a photo")
    height, width = photo.shape[:2]
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 800})
            page.goto(base + "/")
            page.wait_for_selector("#checkpoint option", state="attached")
            page.set_input_files("#file", str(tmp_path / "coffee.png"))
            page.wait_for_function("document.body.dataset.done === '1'", timeout=60_000)
            assert "Done" in page.inner_text("#message")
            # a hint: the picker's colour, clicked at 30 % / 50 % of the gray photo
            page.fill("#size", "8")
            page.eval_on_selector("#color", "(el) => { el.value = '#2ca02c'; }")
            box = page.locator("#gray").bounding_box()
            page.mouse.click(box["x"] + 0.3 * box["width"], box["y"] + 0.5 * box["height"])
            page.wait_for_function("document.body.dataset.done === '2'", timeout=60_000)
            assert "1 hints used" in page.inner_text("#message")
            SCREENSHOT.parent.mkdir(exist_ok=True)
            page.screenshot(path=str(SCREENSHOT), full_page=True)
            result = decode_data_url(page.get_attribute("#download", "href"))
            assert result.shape == photo.shape  # full resolution
            x, y = round(0.3 * width), round(0.5 * height)
            lab = rgb_u8_to_lab(torch.from_numpy(result.transpose(2, 0, 1).copy())[None])[0]
            near = lab[1:, y - 1 : y + 2, x - 1 : x + 2].mean(dim=(1, 2))
            wanted = rgb_u8_to_lab(torch.tensor([44, 160, 44], dtype=torch.uint8).reshape(1, 3, 1, 1))[0, 1:, 0, 0]
            assert torch.dot(near, wanted) / (near.norm() * wanted.norm()) > 0.95, (near, wanted)
            # a bad upload: a message in the page, and the page keeps working
            page.set_input_files("#file", str(tmp_path / "notes.jpg"))
            page.wait_for_function("document.body.dataset.done === '3'", timeout=60_000)
            assert page.get_attribute("#message", "class") == "error"
            assert "notes.jpg" in page.inner_text("#message") and "Traceback" not in page.content()
            page.set_input_files("#file", str(tmp_path / "coffee.png"))
            page.wait_for_function("document.body.dataset.done === '4'", timeout=60_000)
            assert "Done" in page.inner_text("#message")
        finally:
            browser.close()
