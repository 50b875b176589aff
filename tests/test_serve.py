"""``colorize serve``: the web page, over HTTP and in a real browser (headless Chromium)."""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from colorization.color import rgb_u8_to_lab
from colorization.serve import READING_UPLOADS, ColorizeApp, make_server, request_limit, serve_main
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


#: the request deadline of the `quick` server (the default, 30 s, is too long to wait for in a test)
QUICK_DEADLINE_S = 2.0


@pytest.fixture(scope="module")
def quick(server):
    """The same app behind a second server that gives a client 2 s to send a whole request."""
    _, app = server
    httpd = make_server(app, "127.0.0.1", 0, deadline_s=QUICK_DEADLINE_S)
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    yield httpd.server_address[:2]
    httpd.shutdown()
    httpd.server_close()


def post_head(length: int, extra: str = "") -> bytes:
    """A POST's request line and headers, as a client that sends its body later (or never) does."""
    return (
        f"POST /api/colorize HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n{extra}\r\n"
    ).encode()


def read_until_closed(sock: socket.socket, seconds: float) -> tuple[bytes, float]:
    """What the server sends until it closes the connection (waiting `seconds` at most), and when."""
    sock.settimeout(seconds)
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except (TimeoutError, ConnectionResetError):
        pass
    return b"".join(chunks), time.monotonic()


def send(address: tuple, method: str, path: str, headers: dict, body: bytes = b"") -> tuple[int, bytes]:
    """A request with exactly these headers (no Host unless given), over http.client."""
    connection = http.client.HTTPConnection(*address, timeout=60)
    try:
        connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for name, value in headers.items():
            connection.putheader(name, value)
        if body:
            connection.putheader("Content-Type", "application/json")
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body or None)
        reply = connection.getresponse()
        return reply.status, reply.read()
    finally:
        connection.close()


def listed(base: str) -> list[str]:
    with urllib.request.urlopen(base + "/api/checkpoints") as reply:
        return json.loads(reply.read())["checkpoints"]


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


def trickle(sock: socket.socket, stop: threading.Event) -> None:
    """One byte every 0.1 s (never idle long enough for a socket timeout) until the server closes
    the connection or `stop` is set; 20 s at most."""
    for _ in range(200):
        if stop.wait(0.1):
            return
        try:
            sock.sendall(b" ")
        except OSError:
            return


def test_slow_clients_take_no_work_slot_and_are_cut_at_the_deadline(server, quick, photos):
    """Two clients trickling their bodies and one trickling its headers (a byte every 0.1 s) take
    no work slot: a normal request meanwhile is answered (not "busy"), and the slow ones are cut
    (408, closed) at the request deadline, however long they would go on sending."""
    base, _ = server
    body = upload(jpeg(photos["chelsea"]), "cat.jpg", listed(base)[-1])
    url = f"http://{quick[0]}:{quick[1]}/api/colorize"
    assert post(url, body)[0] == 200  # the model is loaded
    stop = threading.Event()
    started = time.monotonic()
    slow = [socket.create_connection(quick, timeout=10) for _ in range(3)]
    try:
        slow[0].sendall(post_head(len(body)) + body[:10])
        slow[1].sendall(post_head(len(body)) + body[:10])
        slow[2].sendall(b"POST /api/colorize HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        for sock in slow:
            threading.Thread(target=trickle, args=(sock, stop), daemon=True).start()
        time.sleep(0.3)  # their headers are read (before the fix, the body clients held both slots)
        status, result = post(url, body)
        answered = time.monotonic() - started
        cut = [read_until_closed(sock, QUICK_DEADLINE_S + 5) for sock in slow]
    finally:
        stop.set()
        for sock in slow:
            sock.close()
    assert status == 200 and result["width"] == photos["chelsea"].shape[1], result
    for reply, at in cut:
        assert reply.startswith(b"HTTP/1.0 408") and b"not sent within 2 s" in reply, reply[:300]
        assert answered < at - started < QUICK_DEADLINE_S + 1.0, (answered, at - started)


def test_a_request_too_large_is_refused_from_its_headers(server):
    """An upload declaring more than the limit is answered 413 at once, without its body (only the
    headers are sent here: the old server waited to drain up to 256 MiB); headers of more than
    64 KiB in all get 431. Both long before the 30 s request deadline, connection closed."""
    base, app = server
    address = ("127.0.0.1", int(base.rsplit(":", 1)[1]))
    padding = "".join(f"X-Padding-{i}: {'a' * 4000}\r\n" for i in range(20))  # 80 KB, each line allowed
    for request, code, text in (
        (post_head(request_limit(app.max_upload) + 1), 413, b"larger than the limit"),
        (post_head(10**12), 413, b"larger than the limit"),
        (f"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n{padding}\r\n".encode(), 431, b"headers are larger than 64 KiB"),
    ):
        with socket.create_connection(address, timeout=10) as sock:
            started = time.monotonic()
            sock.sendall(request)
            reply, at = read_until_closed(sock, 5)
        assert reply.startswith(f"HTTP/1.0 {code}".encode()) and text in reply, reply[:300]
        assert at - started < 2.0, at - started


def test_bodies_held_at_once_are_bounded(server, quick, photos):
    """A request reserves its declared body size before its body is read: while READING_UPLOADS
    full-size uploads are coming in, one more is told "busy" (503) at once instead of being held
    in memory too; the reservations end with their requests."""
    base, app = server
    socks = [socket.create_connection(quick, timeout=10) for _ in range(READING_UPLOADS + 1)]
    try:
        started = time.monotonic()
        for sock in socks:
            sock.sendall(post_head(request_limit(app.max_upload)))
        select.select(socks, [], [], QUICK_DEADLINE_S / 2)
        time.sleep(0.2)
        answered = select.select(socks, [], [], 0)[0]
        assert time.monotonic() - started < QUICK_DEADLINE_S * 0.8  # none was cut at the deadline
        assert len(answered) == 1, len(answered)
        reply, _ = read_until_closed(answered[0], 5)
        assert reply.startswith(b"HTTP/1.0 503") and b"busy" in reply, reply[:300]
    finally:
        for sock in socks:
            sock.close()
    body = upload(jpeg(photos["chelsea"]), "cat.jpg", listed(base)[-1])
    for _ in range(20):  # the server sees the closed connections within moments
        status, _ = post(f"http://{quick[0]}:{quick[1]}/api/colorize", body)
        if status != 503:
            break
        time.sleep(0.1)
    assert status == 200


def test_only_this_servers_names_are_answered_on_any_address(server, photos, tmp_path, capsys):
    """DNS rebinding: a page of evil.example whose name now resolves to this server gets no answer,
    whatever address the server listens on (127.0.0.2 is not 127.0.0.1, like --host 0.0.0.0); the
    loopback names, --allowed-host names and the address the client connected to are answered; a
    POST from another site's page (its Origin) is refused."""
    base, app = server
    try:
        httpd = make_server(app, "127.0.0.2", 0, allowed_hosts=["photos.example"])
    except OSError:
        pytest.skip("127.0.0.2 is not a loopback address on this machine")
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    address = httpd.server_address[:2]
    port = address[1]
    try:
        for host, code in (
            ("evil.example", 403), (f"evil.example:{port}", 403), (f"10.1.2.3:{port}", 403), (None, 403),
            (f"127.0.0.2:{port}", 200), (f"photos.example:{port}", 200), (f"PHOTOS.example.:{port}", 200),
            ("localhost", 200), (f"[::1]:{port}", 200),
        ):  # fmt: skip
            status, data = send(address, "GET", "/", {"Host": host} if host else {})
            assert status == code and (code == 200 or b"--allowed-host" in data), (host, status, data[:200])
        body = upload(jpeg(photos["chelsea"]), "cat.jpg", listed(base)[-1])
        allowed = {"Host": f"photos.example:{port}"}
        for headers, code in (
            ({**allowed, "Origin": f"http://photos.example:{port}"}, 200),
            ({**allowed, "Origin": "http://evil.example"}, 403),
            ({"Host": f"evil.example:{port}", "Origin": f"http://evil.example:{port}"}, 403),
        ):
            assert send(address, "POST", "/api/colorize", headers, body)[0] == code, headers
    finally:
        httpd.shutdown()
        httpd.server_close()
    with pytest.raises(SystemExit):
        serve_main(["--ckpt-dir", str(tmp_path), "--allowed-host", "photos.example:8080"])
    assert "--allowed-host takes a host name" in capsys.readouterr().err


def test_sigterm_stops_the_server_and_removes_its_temporary_folder(tmp_path):
    """`colorize serve` stopped by SIGTERM (systemd, docker stop, kill) removes its private
    temporary folder (made under $TMPDIR) and exits 143."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    command = [sys.executable, "-m", "colorization.colorize", "serve", "--ckpt-dir", str(tmp_path), "--port", "0"]
    process = subprocess.Popen(
        command, cwd=ROOT, env={**os.environ, "TMPDIR": str(temp)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert select.select([process.stdout], [], [], 120)[0], "the server did not start"
        assert b"http://" in process.stdout.readline(), process.stderr.read()
        assert [p.name.startswith("colorize-serve-") for p in temp.iterdir()] == [True]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 143
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert list(temp.iterdir()) == []
