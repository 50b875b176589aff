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

Safety (a visitor is untrusted): it listens on 127.0.0.1 unless ``--host`` says otherwise, and
on any address answers only requests whose Host names this server (a loopback name, the address
the client connected to, or an ``--allowed-host`` name: a DNS name rebound to this machine gets
403) and no other site's page (Origin must match, POSTs must be JSON). A client has
``--request-timeout`` (30 s) to send its whole request, headers (64 KiB at most) and body; an
upload declaring more than the limit is refused from its headers, before its body is sent. A
body is read before a work slot is taken, so slow clients hold none; bodies in memory at once
are bounded (eight full-size uploads: others get "busy"), and at most two photos are worked on
at once (others wait, then get "busy"). A photo is decoded with the command line's rules and
limits (:func:`~colorization.data.images.open_rgb`, ``--max-pixels``) from a file in a private
temporary folder, deleted after the request (the folder when the server stops, SIGTERM and
Ctrl-C included): nothing a visitor sends is written anywhere else. Checkpoints can only be
chosen from the ``--ckpt-dir`` listing (names, never paths) and are loaded as ``colorize`` loads
them (``weights_only=True``, checked config). Every error is a message in the page (JSON
``{"error": ...}``, HTTP 4xx) and the server keeps serving.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import io
import ipaddress
import json
import re
import socket
import sys
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from colorization.data.images import DEFAULT_MAX_PIXELS, IMAGE_EXTENSIONS, UnreadableImage, open_rgb
from colorization.hints import HintsError, hint_channels, parse_hints
from colorization.inference.fullres import compose_full_resolution, gray_of, pad_to_multiple, working_input
from colorization.inference.model import MAX_SIZE, ColorizeError, Colorizer, load_colorizer, pick_device
from colorization.runtime import Interrupted, signals_interrupt

DEFAULT_PORT = 7860
#: the largest photo file a visitor may send (bytes, before base64)
DEFAULT_MAX_UPLOAD = 50 * 1024 * 1024
#: checkpoints listed from --ckpt-dir at most
MAX_CHECKPOINTS = 500
#: requests worked on at once (more wait SLOT_WAIT_S, then get HTTP 503, "busy")
CONCURRENT_REQUESTS = 2
SLOT_WAIT_S = 30
#: seconds a client has to send a whole request: line, headers and body (--request-timeout);
#: also the most a reply may take to be sent
REQUEST_DEADLINE_S = 30
#: bytes of request line and headers at most
HEADER_BYTES = 64 * 1024
#: request bodies held in memory at once (being received, waiting or worked on), in full-size
#: uploads: a request reserves its declared size before its body is read (more get "busy")
READING_UPLOADS = 8
#: seconds a connection refused before its body was read still drops what the client sends,
#: so that the client sees the answer rather than a reset connection
LINGER_S = 1.0
#: Host names always answered (besides --host, --allowed-host and the address connected to)
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
BUSY = "the server is busy with other photos; try again"
#: seconds the checkpoint listing is reused
LISTING_TTL_S = 5.0
#: loaded models kept in memory
CACHED_MODELS = 2


class RequestError(ValueError):
    """A request the app refuses; its message is shown in the page."""

    def __init__(self, message: str, status: HTTPStatus = HTTPStatus.BAD_REQUEST) -> None:
        super().__init__(message)
        self.status = status


class RequestCut(Exception):
    """A client that did not send its request in time, or sent too much before its body: it is
    answered (``status``) and its connection closed."""

    def __init__(self, message: str, status: HTTPStatus) -> None:
        super().__init__(message)
        self.status = status


def request_limit(max_upload: int) -> int:
    """The largest request body for a photo of ``max_upload`` bytes: base64 and the JSON around it."""
    return max_upload * 4 // 3 + 2**20


class RequestReader(io.RawIOBase):
    """A connection's socket as its handler reads it: all reads of one request share a deadline
    (a timeout per read alone lets a client sending a byte every few seconds keep the connection
    for ever) and an allowance of bytes (the headers' size, then the declared body)."""

    def __init__(self, sock: socket.socket, write_timeout: float) -> None:
        super().__init__()
        self.sock, self.write_timeout = sock, write_timeout
        self.seconds = self.deadline = 0.0
        self.allowance = self.received = 0

    def start(self, seconds: float, allowance: int) -> None:
        """A new request: ``seconds`` from now to send all of it, ``allowance`` bytes until
        :meth:`allow` grants more."""
        self.seconds, self.deadline = seconds, time.monotonic() + seconds
        self.allowance, self.received = allowance, 0

    def allow(self, more: int) -> None:
        self.allowance += more

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self.allowance <= 0:
            message = f"the request's headers are larger than {HEADER_BYTES // 1024} KiB"
            raise RequestCut(message, HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE)
        try:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            self.sock.settimeout(left)
            count = self.sock.recv_into(buffer, min(len(buffer), self.allowance))
        except TimeoutError:
            raise RequestCut(
                f"the request was not sent within {self.seconds:g} s", HTTPStatus.REQUEST_TIMEOUT
            ) from None
        finally:
            self.sock.settimeout(self.write_timeout)  # the reply's own limit
        self.allowance -= count
        self.received += count
        return count


class Reservations:
    """Bytes that requests may hold at once; a request that does not fit is refused, not queued."""

    def __init__(self, total: int) -> None:
        self.left = total
        self.lock = threading.Lock()

    def take(self, size: int) -> bool:
        with self.lock:
            if size > self.left:
                return False
            self.left -= size
            return True

    def give(self, size: int) -> None:
        with self.lock:
            self.left += size


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
        # removed by close(), at exit, and on SIGTERM / Ctrl-C (serve_main); a request still
        # decoding a photo then cannot make the removal fail
        self.temp = tempfile.TemporaryDirectory(prefix="colorize-serve-", ignore_cleanup_errors=True)

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
            l_norm = working_input(rgb, size)[None]
            message = ""
            extra = {}
            if hints and colorizer.takes_hints:
                try:
                    given = hint_channels(hints, rgb.shape[:2], tuple(l_norm.shape[-2:]))
                except HintsError as error:
                    raise RequestError(f"{filename}: {error}") from None
                extra["hints"] = pad_to_multiple(given, colorizer.multiple)[0].to(self.device)
            elif hints:
                message = "this checkpoint was trained without hints: they are ignored (train with model.hints=true)"
            padded, box = pad_to_multiple(l_norm, colorizer.multiple)  # as colorize does (unet: 32)
            ab = colorizer(padded.to(self.device), **extra)[0]
            ab = ab if box is None else ab[:, : box[2], : box[3]]
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
    app: ColorizeApp  # these four are set on the subclass made by make_server
    host_names: frozenset[str]  # the Host names answered (DNS rebinding), besides the address connected to
    deadline_s: float  # seconds a client has to send a whole request
    bodies: Reservations  # request bodies held at once
    server_version = "colorize-serve"
    timeout = REQUEST_DEADLINE_S  # sending a reply: the socket's timeout between the request's reads

    def setup(self) -> None:
        super().setup()
        self.rfile.close()
        self.reader = RequestReader(self.connection, self.timeout)
        self.rfile = io.BufferedReader(self.reader)

    def handle_one_request(self) -> None:
        """One request within :class:`RequestReader`'s bounds: a client that misses them gets
        408 or 431 and its connection closed (an idle one is closed without a word)."""
        self.reader.start(self.deadline_s, HEADER_BYTES)
        self.requestline, self.request_version, self.command = "", "HTTP/1.0", ""  # until its line is read
        try:
            super().handle_one_request()
        except RequestCut as cut:
            self.close_connection = True
            if self.reader.received:
                self.refuse(cut.status, str(cut))

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
        message = format % args
        table = getattr(self, "_control_char_table", None)  # escapes a request line's control characters
        sys.stderr.write(f"colorize serve: {self.address_string()} {message.translate(table) if table else message}\n")

    def serves(self, host: str) -> bool:
        """Whether a Host header names this server: a name it was given (a rebound DNS name is
        not one), or the IP address the client connected to (an address cannot be rebound)."""
        name = host if host.endswith("]") else host.rpartition(":")[0] or host
        name = name.rstrip(".")
        if name in self.host_names:
            return True
        try:
            address = ipaddress.ip_address(name.removeprefix("[").removesuffix("]"))
            local = ipaddress.ip_address(self.connection.getsockname()[0])
        except ValueError:
            return False
        return address in (local, getattr(local, "ipv4_mapped", None))

    def foreign(self) -> str | None:
        """Why this request does not come from the page itself (None when it does): a Host that
        does not name this server (a rebound DNS name), or an Origin that is not the Host
        (another site's page posting to it)."""
        host = (self.headers.get("Host") or "").strip().lower()
        if not self.serves(host):
            return f"Host {host[:60]!r} is not a name of this server (start it with --allowed-host NAME to serve one)"
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

    def refuse(self, status: HTTPStatus, message: str) -> None:
        """Answers a request refused before its body was read, and closes the connection. What
        the client still sends is dropped for LINGER_S at most (never the body it declared), so
        that it sees the answer rather than a reset connection."""
        self.close_connection = True
        self.reply_json(status, {"error": message})
        try:
            self.connection.shutdown(socket.SHUT_WR)
            end = time.monotonic() + LINGER_S
            while (left := end - time.monotonic()) > 0:
                self.connection.settimeout(left)
                if not self.connection.recv(2**16):
                    break
        except OSError:  # the client is gone, or LINGER_S is over
            pass

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

    def admitted_length(self) -> int | None:
        """The body size of a POST that may be read, or None when it was refused (from its
        headers: nothing of its body is read)."""
        length = (self.headers.get("Content-Length") or "").strip()
        if self.path != "/api/colorize":
            self.refuse(HTTPStatus.NOT_FOUND, f"no such endpoint: {self.path[:80]}")
        elif reason := self.foreign():
            self.refuse(HTTPStatus.FORBIDDEN, reason)
        elif (self.headers.get("Content-Type") or "").split(";")[0].strip().lower() != "application/json":
            self.refuse(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "send the photo as JSON (application/json)")
        elif not (length.isascii() and length.isdigit()) or "Transfer-Encoding" in self.headers:
            self.refuse(HTTPStatus.LENGTH_REQUIRED, "the request has no Content-Length")
        elif int(length) > request_limit(self.app.max_upload):
            message = f"the upload is larger than the limit of {self.app.max_upload // 2**20} MiB"
            self.refuse(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, message)
        else:
            return int(length)
        return None

    def do_POST(self) -> None:  # noqa: N802
        """The body is read (within the request's deadline) before a work slot is taken, so a
        slow client holds none; its declared size is reserved first, bounding bodies in memory."""
        length = self.admitted_length()
        if length is None:
            return
        if not self.bodies.take(length):
            self.refuse(HTTPStatus.SERVICE_UNAVAILABLE, BUSY)
            return
        try:
            self.reader.allow(length)
            body = self.rfile.read(length)
            if len(body) < length:  # the client left
                self.close_connection = True
                return
            if not self.app.slots.acquire(timeout=SLOT_WAIT_S):
                self.reply_json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": BUSY})
                return
            try:
                status, answer = self.work(body)
            finally:
                self.app.slots.release()
            self.reply_json(status, answer)
        finally:
            self.bodies.give(length)

    def work(self, body: bytes) -> tuple[HTTPStatus, dict]:
        try:
            return HTTPStatus.OK, self.app.colorize(json.loads(body))
        except RequestError as error:
            return error.status, {"error": str(error)}
        except (ValueError, UnicodeDecodeError, RecursionError):  # JSONDecodeError, or an int too long
            return HTTPStatus.BAD_REQUEST, {"error": "the request is not JSON"}
        except Exception as error:  # noqa: BLE001 - the server keeps serving whatever happens
            print(f"colorize serve: error: {type(error).__name__}: {error}", file=sys.stderr, flush=True)
            return HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"internal error ({type(error).__name__})"}


class Server(ThreadingHTTPServer):
    """A thread per connection, so that a slow client delays no other."""

    daemon_threads = True
    request_queue_size = 64  # connections waiting to be accepted (5 by default: a burst waits a second)

    def handle_error(self, request, client_address) -> None:
        """A client that left mid-request is one line, not a traceback."""
        error = sys.exc_info()[1]
        if not isinstance(error, OSError):
            super().handle_error(request, client_address)
            return
        print(f"colorize serve: {client_address[0]} left ({type(error).__name__})", file=sys.stderr, flush=True)


def make_server(
    app: ColorizeApp, host: str = "127.0.0.1", port: int = DEFAULT_PORT, *, allowed_hosts: Iterable[str] = (),
    deadline_s: float = REQUEST_DEADLINE_S,
) -> Server:  # fmt: skip
    """The server of ``app``: it answers the loopback names, ``host``, ``allowed_hosts`` and the
    address a client connected to; a client has ``deadline_s`` to send a whole request."""
    names = {*LOOPBACK_NAMES, f"[{host}]" if ":" in host else host, *allowed_hosts}
    handler = type("AppHandler", (Handler,), {
        "app": app, "host_names": frozenset(name.lower().rstrip(".") for name in names), "deadline_s": deadline_s,
        "bodies": Reservations(READING_UPLOADS * request_limit(app.max_upload)),
    })  # fmt: skip
    return Server((host, port), handler)


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
    parser.add_argument(
        "--allowed-host", action="append", default=[], metavar="NAME",
        help="also answer requests for this host name (repeatable; always answered: localhost, 127.0.0.1, [::1], "
        "--host and the address a client connected to; any other name gets 403, against DNS rebinding)",
    )  # fmt: skip
    parser.add_argument(
        "--request-timeout", type=float, default=REQUEST_DEADLINE_S, metavar="S",
        help=f"seconds a client has to send a whole request, photo included (default {REQUEST_DEADLINE_S})",
    )  # fmt: skip
    return parser


#: what --allowed-host takes: a name or an IPv6 address in brackets (no scheme, port or path)
HOST_NAME = re.compile(r"[A-Za-z0-9_.-]+|\[[0-9A-Fa-f:.]+\]")


def serve_main(argv: Sequence[str]) -> int:
    parser = serve_parser()
    args = parser.parse_args(list(argv))
    for name in ("size", "max_pixels", "max_upload_mib"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if (args.size or 0) > MAX_SIZE:
        parser.error(f"--size must be <= {MAX_SIZE}, got {args.size}")
    if not 0 < args.request_timeout < float("inf"):
        parser.error(f"--request-timeout must be a number of seconds > 0, got {args.request_timeout}")
    for name in args.allowed_host:
        if not HOST_NAME.fullmatch(name):
            parser.error(f"--allowed-host takes a host name (no scheme, port or path), got {name!r}")
    app = server = None
    try:
        with signals_interrupt():  # SIGTERM (kill, systemd, docker stop) and Ctrl-C remove the temporary folder too
            app = ColorizeApp(args.ckpt_dir, args.device, args.size, args.max_pixels, args.max_upload_mib * 2**20)
            server = make_server(
                app, args.host, args.port, allowed_hosts=args.allowed_host, deadline_s=args.request_timeout
            )
            host, port = server.server_address[:2]
            found = len(app.checkpoints())
            print(
                f"colorize serve: http://{host}:{port}/ ({found} checkpoints in {app.ckpt_dir}); Ctrl-C stops",
                flush=True,
            )
            server.serve_forever()
    except (ColorizeError, OSError) as error:
        print(f"colorize serve: error: {error}", file=sys.stderr)
        return 2
    except Interrupted as stop:
        print(f"colorize serve: stopped ({stop})", file=sys.stderr)
        return stop.exit_code
    finally:
        if server is not None:
            server.server_close()
        if app is not None:
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
