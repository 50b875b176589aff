"""``colorize serve``: a web page to colour photos, with colour hints, in the browser.

    colorize serve --ckpt-dir logs/train/runs             # http://127.0.0.1:7860
    colorize serve --ckpt-dir models/ --port 8080 --host 0.0.0.0   # reachable from other machines

Drop a photo, see gray | colorized side by side, click the photo to add a colour hint (the colour
picker's colour, the patch size beside it; a model trained with ``model.hints=true`` follows
them, others colour automatically), choose a checkpoint from the folder, download the
full-resolution result.

Why a page served by the standard library (``http.server``) rather than Gradio: the whole app is
one handler and one page (no framework, no new dependency, nothing fetched from the internet by
the page), every request and error is under our control (size checks before reading, messages
in the page), and the browser test drives plain HTML elements.

Safety (a visitor is untrusted): it listens on 127.0.0.1 unless ``--host`` says otherwise
(and then answers only requests whose Host names this machine, and no other site's page:
Origin must match, POSTs must be JSON); at most two photos are worked on at once (others wait, then
get "busy"), a client idle for 30 s mid-request is dropped;
requests larger than the upload limit are refused before they are read; a photo is decoded
with the command line's rules and limits (:func:`~colorization.data.images.open_rgb`,
``--max-pixels``) from a file in a private temporary folder, deleted after the request (the
folder when the server stops): nothing a visitor sends is written anywhere else. Checkpoints
can only be chosen from the ``--ckpt-dir`` listing (names, never paths) and are loaded as
``colorize`` loads them (``weights_only=True``, checked config). Every error is a message in
the page (JSON ``{"error": ...}``, HTTP 4xx) and the server keeps serving.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import io
import json
import sys
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from colorization.data.images import DEFAULT_MAX_PIXELS, IMAGE_EXTENSIONS, UnreadableImage, open_rgb
from colorization.hints import HintsError, hint_channels, parse_hints
from colorization.inference.fullres import compose_full_resolution, gray_of, working_input
from colorization.inference.model import MAX_SIZE, ColorizeError, Colorizer, load_colorizer, pick_device

DEFAULT_PORT = 7860
#: the largest photo file a visitor may send (bytes, before base64)
DEFAULT_MAX_UPLOAD = 50 * 1024 * 1024
#: checkpoints listed from --ckpt-dir at most
MAX_CHECKPOINTS = 500
#: an oversized request body is read (and dropped) up to this size before the refusal
DRAIN_BYTES = 256 * 1024 * 1024
#: requests worked on at once (more get HTTP 503, "busy"); seconds a client may idle mid-request
CONCURRENT_REQUESTS = 2
REQUEST_TIMEOUT_S = 30
#: seconds the checkpoint listing is reused
LISTING_TTL_S = 5.0
#: loaded models kept in memory
CACHED_MODELS = 2


class RequestError(ValueError):
    """A request the app refuses; its message is shown in the page."""

    def __init__(self, message: str, status: HTTPStatus = HTTPStatus.BAD_REQUEST) -> None:
        super().__init__(message)
        self.status = status


def png_data_url(rgb_u8: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(rgb_u8).save(buffer, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


class ColorizeApp:
    """What the page asks for, without HTTP: the checkpoint list and one colorization."""

    def __init__(
        self, ckpt_dir: str | Path, device: str = "auto", size: int | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS, max_upload: int = DEFAULT_MAX_UPLOAD,
    ) -> None:  # fmt: skip
        self.ckpt_dir = Path(ckpt_dir).expanduser().resolve()
        if not self.ckpt_dir.is_dir():
            raise ColorizeError(f"--ckpt-dir {ckpt_dir}: no such folder")
        self.device = pick_device(device)
        self.size, self.max_pixels, self.max_upload = size, max_pixels, max_upload
        self.models: OrderedDict[str, tuple[Colorizer, int]] = OrderedDict()
        self.lock = threading.Lock()  # one network run at a time (torch uses all cores already)
        self.load_lock = threading.Lock()  # the model cache
        #: requests being worked on at most (others get "busy"): bounds memory and CPU
        self.slots = threading.BoundedSemaphore(CONCURRENT_REQUESTS)
        self._listing: tuple[float, list[str]] = (0.0, [])
        self.temp = tempfile.TemporaryDirectory(prefix="colorize-serve-")

    def close(self) -> None:
        self.temp.cleanup()

    def checkpoints(self) -> list[str]:
        """``.ckpt`` files under the folder, as names relative to it (symlinks leading outside
        it are left out); listed again at most every few seconds."""
        listed_at, names = self._listing
        if time.monotonic() - listed_at < LISTING_TTL_S:
            return names
        names = []
        for path in sorted(self.ckpt_dir.rglob("*.ckpt")):
            if path.is_file() and path.resolve().is_relative_to(self.ckpt_dir):
                names.append(path.relative_to(self.ckpt_dir).as_posix())
            if len(names) >= MAX_CHECKPOINTS:
                break
        self._listing = (time.monotonic(), names)
        return names

    def model(self, name: object) -> tuple[Colorizer, int]:
        if not isinstance(name, str) or name not in self.checkpoints():
            raise RequestError(f"checkpoint {name!r:.80}: not one of the listed checkpoints")
        with self.load_lock:
            if name not in self.models:
                try:
                    self.models[name] = load_colorizer(self.ckpt_dir / name, self.device)
                except ColorizeError as error:
                    raise RequestError(str(error).replace(str(self.ckpt_dir) + "/", "")) from None
                while len(self.models) > CACHED_MODELS:
                    self.models.popitem(last=False)
            self.models.move_to_end(name)
            return self.models[name]

    def decode_upload(self, payload: dict) -> tuple[np.ndarray, str]:
        """The photo of a request: base64 ``image`` (a data URL or bare), ``filename`` -> RGB."""
        filename = payload.get("filename") or "photo"
        filename = Path(str(filename)).name[:100] or "photo"
        data = payload.get("image")
        if not isinstance(data, str) or not data:
            raise RequestError("no photo in the request")
        data = data.split(",", 1)[1] if data.startswith("data:") else data
        if len(data) * 3 // 4 > self.max_upload:
            raise RequestError(
                f"{filename}: larger than the upload limit of {self.max_upload // 2**20} MiB",
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            )
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise RequestError(f"{filename}: the upload is not base64 data") from None
        suffix = Path(filename).suffix.lower()
        path = Path(self.temp.name) / f"{uuid.uuid4().hex}{suffix if suffix in IMAGE_EXTENSIONS else ''}"
        try:
            path.write_bytes(raw)
            rgb = np.asarray(open_rgb(path, max_pixels=self.max_pixels))
        except (UnreadableImage, OSError, ValueError, MemoryError) as error:
            raise RequestError(str(error).replace(str(path), filename)) from None
        finally:
            path.unlink(missing_ok=True)
        return rgb, filename

    @torch.no_grad()
    def colorize(self, payload: object) -> dict:
        """``{"image", "filename", "checkpoint", "hints": [...]}`` -> ``{"width", "height",
        "gray", "colorized" (PNG data URLs, full resolution), "hints_used", "message"}``."""
        if not isinstance(payload, dict):
            raise RequestError("the request must be a JSON object")
        colorizer, trained_size = self.model(payload.get("checkpoint"))
        rgb, filename = self.decode_upload(payload)
        try:
            hints = parse_hints(payload.get("hints") or [], "hints")
        except HintsError as error:
            raise RequestError(str(error)) from None
        size = self.size or trained_size
        with self.lock:
            l_norm = working_input(rgb, size)[None].to(self.device)
            message = ""
            extra = {}
            if hints and colorizer.takes_hints:
                try:
                    extra["hints"] = hint_channels(hints, rgb.shape[:2], tuple(l_norm.shape[-2:]))
                except HintsError as error:
                    raise RequestError(f"{filename}: {error}") from None
            elif hints:
                message = "this checkpoint was trained without hints: they are ignored (train with model.hints=true)"
            ab = colorizer(l_norm, **extra)[0]
            colorized = compose_full_resolution(rgb, ab)
        height, width = rgb.shape[:2]
        return {
            "width": width,
            "height": height,
            "gray": png_data_url(gray_of(rgb)),
            "colorized": png_data_url(colorized),
            "hints_used": len(hints) if "hints" in extra else 0,
            "message": message,
        }


class Handler(BaseHTTPRequestHandler):
    app: ColorizeApp  # set on the subclass made by make_server
    loopback: bool = True  # listening on this machine only: Host must name it (DNS rebinding)
    server_version = "colorize-serve"
    timeout = REQUEST_TIMEOUT_S  # a client that stops sending mid-request is dropped

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
        message = format % args
        table = getattr(self, "_control_char_table", None)  # escapes a request line's control characters
        sys.stderr.write(f"colorize serve: {self.address_string()} {message.translate(table) if table else message}\n")

    def foreign(self) -> str | None:
        """Why this request does not come from the page itself (None when it does): a Host that
        is not this machine while listening on it only (a rebound DNS name), or an Origin that
        is not the Host (another site's page posting to it)."""
        host = (self.headers.get("Host") or "").lower()
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        if self.loopback and name not in ("localhost", "127.0.0.1", "[::1]"):
            return f"Host {host[:60]!r} is not this machine"
        origin = self.headers.get("Origin")
        if origin is not None and origin.lower() not in (f"http://{host}", f"https://{host}"):
            return f"requests from {origin[:60]!r} are not accepted"
        return None

    def reply(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        self.wfile.write(body)

    def reply_json(self, status: HTTPStatus, value: object) -> None:
        self.reply(status, json.dumps(value).encode(), "application/json")

    def drain(self, length: int) -> None:
        """Read and drop a refused request's body up to DRAIN_BYTES, so that a client still
        sending it sees the answer; the connection is closed after."""
        self.close_connection = True
        remaining = min(length, DRAIN_BYTES) if length > 0 else 0
        while remaining > 0:
            chunk = self.rfile.read(min(2**20, remaining))
            if not chunk:
                break
            remaining -= len(chunk)

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if reason := self.foreign():
            self.reply_json(HTTPStatus.FORBIDDEN, {"error": reason})
        elif self.path in ("/", "/index.html"):
            self.reply(HTTPStatus.OK, PAGE.encode(), "text/html; charset=utf-8")
        elif self.path == "/api/checkpoints":
            listing = {"checkpoints": self.app.checkpoints(), "max_upload_bytes": self.app.max_upload}
            self.reply_json(HTTPStatus.OK, listing)
        else:
            self.reply_json(HTTPStatus.NOT_FOUND, {"error": f"no such page: {self.path[:80]}"})

    def do_POST(self) -> None:  # noqa: N802
        if self.path != "/api/colorize":
            self.reply_json(HTTPStatus.NOT_FOUND, {"error": f"no such endpoint: {self.path[:80]}"})
            return
        if reason := self.foreign():
            self.close_connection = True
            self.reply_json(HTTPStatus.FORBIDDEN, {"error": reason})
            return
        if (self.headers.get("Content-Type") or "").split(";")[0].strip().lower() != "application/json":
            self.close_connection = True
            self.reply_json(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, {"error": "send the photo as JSON (application/json)"})
            return
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self.close_connection = True
            self.reply_json(HTTPStatus.LENGTH_REQUIRED, {"error": "the request has no Content-Length"})
            return
        limit = self.app.max_upload * 4 // 3 + 2**20  # base64 and the JSON around it
        if not 0 <= length <= limit:
            self.drain(length)
            message = f"the upload is larger than the limit of {self.app.max_upload // 2**20} MiB"
            self.reply_json(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": message})
            return
        if not self.app.slots.acquire(timeout=REQUEST_TIMEOUT_S):
            self.drain(length)
            busy = "the server is busy with other photos; try again"
            self.reply_json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": busy})
            return
        try:
            payload = json.loads(self.rfile.read(length))
            self.reply_json(HTTPStatus.OK, self.app.colorize(payload))
        except RequestError as error:
            self.reply_json(error.status, {"error": str(error)})
        except (ValueError, UnicodeDecodeError, RecursionError):  # JSONDecodeError, or an int too long
            self.reply_json(HTTPStatus.BAD_REQUEST, {"error": "the request is not JSON"})
        except Exception as error:  # noqa: BLE001 - the server keeps serving whatever happens
            print(f"colorize serve: error: {type(error).__name__}: {error}", file=sys.stderr, flush=True)
            self.reply_json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"internal error ({type(error).__name__})"})
        finally:
            self.app.slots.release()


def make_server(app: ColorizeApp, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> ThreadingHTTPServer:
    loopback = host in ("127.0.0.1", "localhost", "::1")
    handler = type("AppHandler", (Handler,), {"app": app, "loopback": loopback})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


def serve_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="colorize serve", description="A web page to colour photos (with colour hints) in the browser."
    )
    parser.add_argument("--ckpt-dir", required=True, help="folder of checkpoints (.ckpt, searched recursively)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: any free)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, mps or auto (default)")
    parser.add_argument("--size", type=int, default=None, help="working size (default: each model's training size)")
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, help="refuse larger photos (w x h)")
    parser.add_argument(
        "--max-upload-mib", type=int, default=DEFAULT_MAX_UPLOAD // 2**20, help="refuse larger files (default 50)"
    )
    return parser


def serve_main(argv: Sequence[str]) -> int:
    parser = serve_parser()
    args = parser.parse_args(list(argv))
    for name in ("size", "max_pixels", "max_upload_mib"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if (args.size or 0) > MAX_SIZE:
        parser.error(f"--size must be <= {MAX_SIZE}, got {args.size}")
    try:
        app = ColorizeApp(args.ckpt_dir, args.device, args.size, args.max_pixels, args.max_upload_mib * 2**20)
        server = make_server(app, args.host, args.port)
    except (ColorizeError, OSError) as error:
        print(f"colorize serve: error: {error}", file=sys.stderr)
        return 2
    host, port = server.server_address[:2]
    found = len(app.checkpoints())
    print(f"colorize serve: http://{host}:{port}/ ({found} checkpoints in {app.ckpt_dir}); Ctrl-C stops", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        app.close()
    return 0


PAGE = r"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>colorize</title>
<style>
  body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #222; }
  header { display: flex; flex-wrap: wrap; gap: 1rem; align-items: center; margin-bottom: 1rem; }
  .panels { display: flex; gap: 1rem; flex-wrap: wrap; }
  figure { margin: 0; flex: 1 1 320px; max-width: 48%; }
  figure img { width: 100%; display: block; background: #eee; min-height: 120px; }
  #gray { cursor: crosshair; }
  figcaption { font-size: 0.9rem; color: #555; margin-top: 0.3rem; }
  #message { min-height: 1.5rem; margin: 0.5rem 0; }
  #message.error { color: #b00020; font-weight: 600; }
  #hints li { font-family: monospace; }
  .swatch { display: inline-block; width: 0.9em; height: 0.9em; border: 1px solid #444; vertical-align: middle; }
</style>
</head>
<body>
<h1>colorize</h1>
<header>
  <label>Photo <input type="file" id="file" accept="image/*"></label>
  <label>Checkpoint <select id="checkpoint"></select></label>
  <label>Hint colour <input type="color" id="color" value="#d62728"></label>
  <label>Hint size (px) <input type="number" id="size" value="0" min="0" max="1024" style="width:5em"></label>
  <button id="clear" type="button">Clear hints</button>
  <a id="download" download="colorized.png">Download</a>
</header>
<div id="message" role="status"></div>
<div class="panels">
  <figure><img id="gray" alt="gray photo: click to add a colour hint">
    <figcaption>Gray (click to add a hint)</figcaption></figure>
  <figure><img id="colorized" alt="colorized photo"><figcaption>Colorized</figcaption></figure>
</div>
<ol id="hints"></ol>
<script>
const $ = (id) => document.getElementById(id);
let photo = null, filename = "photo", hints = [], busy = false, again = false, maxUpload = Infinity;

function say(text, isError) {
  $("message").textContent = text;
  $("message").className = isError ? "error" : "";
}

async function loadCheckpoints() {
  const reply = await fetch("/api/checkpoints");
  const listing = await reply.json();
  const names = listing.checkpoints || [];
  maxUpload = listing.max_upload_bytes || Infinity;
  for (const name of names) {
    const option = document.createElement("option");
    option.value = option.textContent = name;
    $("checkpoint").appendChild(option);
  }
  if (!names.length) say("No checkpoint (.ckpt) in the folder the server was started with.", true);
}

function showHints() {
  $("hints").innerHTML = "";
  hints.forEach((h, i) => {
    const item = document.createElement("li");
    item.innerHTML = `<span class="swatch" style="background:${h.color}"></span> (${h.x}, ${h.y}) ${h.color}` +
      (h.size ? ` size ${h.size}` : "");
    $("hints").appendChild(item);
  });
}

async function colorize() {
  if (!photo) return;
  if (busy) { again = true; return; }
  busy = true;
  say("Colorizing\u2026", false);
  document.body.dataset.state = "busy";
  try {
    const reply = await fetch("/api/colorize", {
      method: "POST",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify({image: photo, filename, checkpoint: $("checkpoint").value, hints: {points: hints}}),
    });
    let result;
    try { result = await reply.json(); } catch (e) { result = {error: `the server answered ${reply.status}`}; }
    if (!reply.ok || result.error) {
      say(result.error || `the server answered ${reply.status}`, true);
    } else {
      $("gray").src = result.gray;
      $("colorized").src = result.colorized;
      $("colorized").dataset.width = result.width;
      $("colorized").dataset.height = result.height;
      $("download").href = result.colorized;
      $("download").download = filename.replace(/\.[^.]*$/, "") + "_colorized.png";
      say(result.message || `Done: ${result.width}x${result.height}, ${result.hints_used} hints used.`, false);
    }
  } catch (e) {
    say(`The server cannot be reached (${e})`, true);
  } finally {
    busy = false;
    document.body.dataset.state = "idle";
    document.body.dataset.done = String(Number(document.body.dataset.done || 0) + 1);
    if (again) { again = false; colorize(); }
  }
}

$("file").addEventListener("change", () => {
  const file = $("file").files[0];
  if (!file) return;
  filename = file.name;
  hints = [];
  if (file.size > maxUpload) {
    say(`${file.name}: larger than the upload limit of ${Math.floor(maxUpload / 1048576)} MiB`, true);
    document.body.dataset.done = String(Number(document.body.dataset.done || 0) + 1);
    return;
  }
  showHints();
  const reader = new FileReader();
  reader.onload = () => { photo = reader.result; colorize(); };
  reader.readAsDataURL(file);
});

$("gray").addEventListener("click", (event) => {
  const img = $("gray");
  if (!photo || !img.naturalWidth) return;
  const x = Math.round(event.offsetX * img.naturalWidth / img.clientWidth);
  const y = Math.round(event.offsetY * img.naturalHeight / img.clientHeight);
  const hint = {x, y, color: $("color").value};
  const size = parseInt($("size").value, 10);
  if (size > 0) hint.size = size;
  hints.push(hint);
  showHints();
  colorize();
});

$("clear").addEventListener("click", () => { hints = []; showHints(); colorize(); });
$("checkpoint").addEventListener("change", colorize);
loadCheckpoints();
</script>
</body>
</html>
"""
