"""Video colouring: flicker, accuracy, speed and memory of ``colorize --temporal none|ema|flow``
on test clips whose true colours and motion are known.

    .venv/bin/python experiments/video/run.py               # 5 clips x 3 methods, then the 1- and 10-min clips
    .venv/bin/python experiments/video/run.py --no-long     # the 5 short clips only (~5 min on 2 cores)
    .venv/bin/python experiments/video/run.py --quick       # smoke run: 2 clips of 24 frames at 160x120 (~1 min)
    .venv/bin/python experiments/video/run.py --ckpt CKPT --long-minutes 3

Steps (what each number means: ``experiments/video/README.md``):

1. clips: each clip is a function frame index -> an axis-aligned affine map (scale and
   translation) from frame pixel coordinates to the coordinates of a still photo of
   ``../shared/data`` (photos the default checkpoint never trained on: ``bsds500/test``); a
   frame is the photo sampled bilinearly at the mapped pixel centres (``grid_sample``,
   ``align_corners=False``). Default clips, 320x240, 24 frames/s, 72 frames: ``pan_a``,
   ``pan_b`` (slow sub-pixel pans, 1.2-1.5 px/frame), ``zoom`` (x1.3 over the clip, centred),
   ``cut`` (36 frames of a pan over photo A, then 36 over photo B: a hard cut at frame 36),
   ``noisy_pan`` (a pan with seeded Gaussian noise, sigma 8 of 255, per frame and channel;
   the truth is the noiseless frame). Written as H.264 MP4 (libx264, yuv420p, CRF 14, mbtree
   off so that the encode is the same every run, pts = frame index at 1/24 s) in a temporary
   folder; the truth frames are rendered again from the same function when scoring (never kept);
2. run: ``python -m colorization.colorize CLIP --ckpt CKPT -o DIR --temporal METHOD``, a
   child process, ``--repeats`` times (3) per clip and method, methods interleaved: wall
   seconds, frames / wall (includes starting Python and loading the model), the frames/s
   colorize prints (its own, without start-up), CPU seconds and peak resident memory
   (``os.wait4`` -> ``ru_maxrss``); the fastest run's times (the CPU may be shared), the
   highest peak; the outputs of the runs compared frame by frame;
3. metrics, per clip and method, on the decoded output MP4 (rgb24 -> Lab):
   flicker = mean over consecutive frame pairs within a shot of the mean over valid pixels
   of ``|| ab_t(x) - ab_{t-1}(y) ||``, y = where the source point seen at x in frame t lies in
   frame t-1 (the clip's known motion; ab_{t-1} sampled bilinearly at y; valid: x and y at
   least 2 px inside their frames); dE2000 = mean CIEDE2000 to the noiseless truth frame
   over frames and pixels. Reference rows: ``truth`` (its flicker is the floor that
   resampling alone gives), ``input`` (the decoded input clip: H.264 loss, noise) and
   ``gray`` (the input's L with ab = 0). ``cut``: the mean ab distance between the ema / flow
   output and the none output on the first 1 and 3 frames after the cut, the 3 frames
   before it and the first 1 and 3 frames of the clip (no history there either);
4. long clips (unless ``--no-long``): 640x480, 24 frames/s, 1 minute and ``--long-minutes``
   (10), a slow back-and-forth pan with a mono AAC sine track, generated frame by frame to
   a temporary file (libx264 ultrafast), coloured with ``--temporal flow``: wall time,
   frames/s, peak memory; the output checked for frame count, size, frame rate, timestamps,
   duration and an audio stream; both files deleted after.

Results: ``experiments/video/output/results.json``, ``results.md`` (the tables),
``strip.jpg`` (frames of ``noisy_pan``: truth | none | flow, and the per-pixel flicker maps
of none and flow) and ``flicker.png`` (flicker of each frame pair over time); ``--quick``
writes into ``output/quick/``. A run that is stopped (SIGTERM, Ctrl-C) keeps the parts it
finished in ``output/resume.partial.json``: the same command goes on from there (``--fresh``:
start again).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SHARED = ROOT.parent / "shared" / "data"
DEFAULT_CKPT = ROOT / "experiments" / "natural_photos" / "runs" / "recipe" / "checkpoints" / "last.ckpt"
FPS = 24
METHODS = ("none", "ema", "flow")
#: reference rows: the truth, the truth as colorize's output encoding leaves it (a perfectly stable
#: colouring's floor), the decoded input clip, and its L with ab = 0
REFERENCES = ("truth", "truth_h264", "input", "gray")
#: colorize's default --crf and its preset (colorization/inference/video.py): the truth_h264 row
OUTPUT_CRF, OUTPUT_PRESET = 18, "fast"
#: clips the acceptance check covers (the flicker of flow at most half of none's, dE2000 at most 5 % worse)
PANNING = ("pan_a", "pan_b", "noisy_pan", "zoom")
FLICKER_REDUCTION_REQUIRED = 0.50
DE_INCREASE_ALLOWED = 0.05
#: the first frame after the cut: mean ab distance to the per-frame colouring, at most (ab units)
CUT_TOLERANCE_AB = 1.0
MEMORY_LIMIT_MIB = 1536.0
#: a flicker pixel counts when it, and where it came from in the previous frame, lie this far inside
BORDER_PX = 2.0
#: the short clips' encoding (small loss: the clip's L is what colorize sees)
CLIP_CRF, CLIP_PRESET = 14, "medium"
#: the long clips' encoding (quick to make)
LONG_CRF, LONG_PRESET = 18, "ultrafast"
AUDIO_RATE, AUDIO_HZ = 44100, 440.0
#: the photos (sub-paths of ../shared/data: none of them in the default checkpoint's training folders)
PHOTOS = {
    "pan_a": "bsds500/test/228076.jpg",  # lighthouse, sea, rocks, sky
    "pan_b": "bsds500/test/36046.jpg",  # green hill, lake, sky
    "zoom": "bsds500/test/28083.jpg",  # mountain, meadow, clouds
    "cut_a": "bsds500/test/145079.jpg",  # garden pond, trees, flowers
    "cut_b": "bsds500/test/384022.jpg",  # boat on a beach, sea, cliffs
    "noisy_pan": "bsds500/test/201080.jpg",  # castle, blue sky, meadow
    "long": "bsds500/test/202000.jpg",  # mountains, sky, field
}
TRAINED_ON = ("landscapes/train", "bsds500/train", "caltech101/train")


# -- 1. clips -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Shot:
    """One continuous shot over one photo. ``scale``: photo px per frame px (after the photo is
    resized by ``photo_scale``); motion ``pan`` moves the view's centre ``velocity`` frame px per
    frame (the path centred on the photo's centre + ``offset``, photo px); ``zoom`` magnifies
    from 1 to ``zoom`` geometrically about that centre; ``swing`` moves the centre back and forth
    along x (``amplitude`` photo px, ``period`` frames) and, a quarter as far, along y."""

    photo: str
    frames: int
    motion: str = "pan"
    scale: float = 1.0
    photo_scale: float = 1.0
    velocity: tuple[float, float] = (0.0, 0.0)
    offset: tuple[float, float] = (0.0, 0.0)
    zoom: float = 1.0
    amplitude: float = 0.0
    period: float = 1.0


@dataclass(frozen=True)
class Clip:
    name: str
    width: int
    height: int
    shots: tuple[Shot, ...]
    noise: float = 0.0
    seed: int = 0
    what: str = ""

    @property
    def frames(self) -> int:
        return sum(shot.frames for shot in self.shots)

    @property
    def cuts(self) -> list[int]:
        """Frame indices that start a new shot (after the first)."""
        starts, total = [], 0
        for shot in self.shots[:-1]:
            total += shot.frames
            starts.append(total)
        return starts

    def locate(self, t: int) -> tuple[int, int]:
        """Frame ``t`` -> (shot index, index within the shot)."""
        for k, shot in enumerate(self.shots):
            if t < shot.frames:
                return k, t
            t -= shot.frames
        raise IndexError(t)

    def affine(self, t: int, photo_size: tuple[int, int]) -> tuple[float, float, float]:
        """(s, ou, ov): frame point (x, y) (pixel centres at i + 0.5) -> photo point (s x + ou, s y + ov)."""
        k, i = self.locate(t)
        shot = self.shots[k]
        pw, ph = photo_size
        cx, cy = pw / 2 + shot.offset[0], ph / 2 + shot.offset[1]
        s = shot.scale
        if shot.motion == "pan":
            step = i - (shot.frames - 1) / 2
            cx += step * s * shot.velocity[0]
            cy += step * s * shot.velocity[1]
        elif shot.motion == "zoom":
            s = shot.scale / shot.zoom ** (i / max(1, shot.frames - 1))
        elif shot.motion == "swing":
            phase = 2 * math.pi * i / shot.period
            cx += shot.amplitude * math.sin(phase)
            cy += shot.amplitude / 4 * math.sin(phase / 2)
        else:
            raise ValueError(shot.motion)
        return s, cx - s * self.width / 2, cy - s * self.height / 2


def default_clips(width: int, height: int, frames: int) -> list[Clip]:
    """The five test clips; geometry designed at 320x240 (photo px = frame px) and scaled."""
    k = width / 320  # photos resized by k: the same view at any frame size
    half = frames // 2

    def pan(photo: str, n: int, velocity, offset=(0.0, 0.0)) -> Shot:
        v = (velocity[0] * k, velocity[1] * k)  # frame px per frame, as at 320x240
        return Shot(PHOTOS[photo], n, "pan", 1.0, k, v, (offset[0] * k, offset[1] * k))

    return [
        Clip("pan_a", width, height, (pan("pan_a", frames, (1.37, 0.0)),), what="horizontal pan, 1.37 px/frame"),
        Clip("pan_b", width, height, (pan("pan_b", frames, (1.13, 0.61)),), what="diagonal pan, (1.13, 0.61) px/frame"),
        Clip(
            "zoom",
            width,
            height,
            (Shot(PHOTOS["zoom"], frames, "zoom", 1.0, k, zoom=1.3),),
            what="centred zoom x1.0 -> x1.3",
        ),
        Clip(
            "cut",
            width,
            height,
            (pan("cut_a", half, (1.21, 0.0)), pan("cut_b", frames - half, (-1.29, 0.33))),
            what=f"pan over photo A, hard cut at frame {half}, pan over photo B",
        ),
        Clip(
            "noisy_pan",
            width,
            height,
            (pan("noisy_pan", frames, (-1.43, -0.27)),),
            noise=8.0,
            seed=1,
            what="pan, (-1.43, -0.27) px/frame, Gaussian noise sigma 8/255 per frame",
        ),
    ]


def long_clip(minutes: float, width: int = 640, height: int = 480) -> Clip:
    """A slow back-and-forth pan over a photo upscaled 1/0.6 (640x480 from a 481x321 photo)."""
    frames = round(minutes * 60 * FPS)
    shot = Shot(PHOTOS["long"], frames, "swing", scale=0.6, amplitude=40.0, period=20 * FPS)
    name = f"long_{minutes:g}min"
    return Clip(name, width, height, (shot,), what=f"{minutes:g} min, back-and-forth pan, 20 s period, AAC audio")


class Renderer:
    """Frames of a clip as uint8 (3, H, W) tensors, rendered on demand."""

    def __init__(self, clip: Clip) -> None:
        from PIL import Image, ImageOps

        self.clip = clip
        self.photos: dict[tuple[str, float], torch.Tensor] = {}
        for shot in clip.shots:
            key = (shot.photo, shot.photo_scale)
            if key in self.photos:
                continue
            with Image.open(SHARED / shot.photo) as opened:
                image = ImageOps.exif_transpose(opened).convert("RGB")
            if shot.photo_scale != 1.0:
                size = (round(image.width * shot.photo_scale), round(image.height * shot.photo_scale))
                image = image.resize(size, Image.Resampling.LANCZOS)
            array = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).float()
            self.photos[key] = array[None]
        self._check_bounds()

    def _photo(self, t: int) -> torch.Tensor:
        shot = self.clip.shots[self.clip.locate(t)[0]]
        return self.photos[(shot.photo, shot.photo_scale)]

    def affine(self, t: int) -> tuple[float, float, float]:
        photo = self._photo(t)
        return self.clip.affine(t, (photo.shape[3], photo.shape[2]))

    def _check_bounds(self) -> None:
        """Every frame's view lies inside its photo, 1 px in (no padding is ever sampled)."""
        for t in range(self.clip.frames):
            photo = self._photo(t)
            s, ou, ov = self.affine(t)
            x0, x1 = ou, ou + s * self.clip.width
            y0, y1 = ov, ov + s * self.clip.height
            if x0 < 1 or y0 < 1 or x1 > photo.shape[3] - 1 or y1 > photo.shape[2] - 1:
                raise SystemExit(f"clip {self.clip.name}: frame {t} leaves its photo {tuple(photo.shape[2:])}")

    def render(self, t: int, noisy: bool = False) -> torch.Tensor:
        """Frame ``t``, (3, H, W) uint8; ``noisy``: with the clip's seeded noise (the input)."""
        photo = self._photo(t)
        s, ou, ov = self.affine(t)
        w, h = self.clip.width, self.clip.height
        xs = (torch.arange(w, dtype=torch.float64) + 0.5) * s + ou
        ys = (torch.arange(h, dtype=torch.float64) + 0.5) * s + ov
        gx = (2 * xs / photo.shape[3] - 1).float()
        gy = (2 * ys / photo.shape[2] - 1).float()
        grid = torch.stack((gx[None, :].expand(h, w), gy[:, None].expand(h, w)), dim=-1)
        frame = F.grid_sample(photo, grid[None], mode="bilinear", align_corners=False)[0]
        if noisy and self.clip.noise > 0:
            generator = torch.Generator().manual_seed(self.clip.seed * 1_000_003 + t)
            frame = frame + self.clip.noise * torch.randn(frame.shape, generator=generator)
        return frame.round_().clamp_(0, 255).to(torch.uint8)


def _audio_frames(samples: int, start: int) -> Iterator:
    """Mono float planar sine frames of 1024 samples from sample ``start`` up to ``samples``."""
    import av

    n = start
    while n < samples:
        count = min(1024, samples - n)
        wave = 0.25 * np.sin(2 * np.pi * AUDIO_HZ * (n + np.arange(count)) / AUDIO_RATE)
        frame = av.AudioFrame.from_ndarray(wave.astype(np.float32)[None], format="fltp", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = AUDIO_RATE, n, Fraction(1, AUDIO_RATE)
        yield frame
        n += count


def write_clip(
    clip: Clip,
    path: Path,
    crf: int = CLIP_CRF,
    preset: str = CLIP_PRESET,
    audio: bool = False,
    progress: bool = False,
    noisy: bool = True,
) -> float:
    """Encode ``clip`` frame by frame to ``path`` (its input frames; ``noisy=False``: the truth);
    returns seconds."""
    import av

    start = time.perf_counter()
    renderer = Renderer(clip)
    total = clip.frames
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = clip.width, clip.height, "yuv420p"
        # mbtree off: with it this libx264 encodes the same frames differently from run to run
        video.options = {"crf": str(crf), "preset": preset, "x264-params": "mbtree=0"}
        sound = container.add_stream("aac", rate=AUDIO_RATE, layout="mono") if audio else None
        written = 0
        for t in range(total):
            frame = av.VideoFrame.from_ndarray(renderer.render(t, noisy=noisy).permute(1, 2, 0).numpy(), format="rgb24")
            frame.pts, frame.time_base = t, Fraction(1, FPS)
            for packet in video.encode(frame):
                container.mux(packet)
            if sound is not None:
                upto = (t + 1) * AUDIO_RATE // FPS
                for chunk in _audio_frames(upto, written):
                    for packet in sound.encode(chunk):
                        container.mux(packet)
                    written += chunk.samples
            if progress and (t + 1) % (FPS * 60) == 0:
                print(f"  generated {(t + 1) / FPS / 60:.0f} of {total / FPS / 60:.0f} min", flush=True)
        for packet in video.encode():
            container.mux(packet)
        if sound is not None:
            for packet in sound.encode():
                container.mux(packet)
    return time.perf_counter() - start


def decoded_frames(path: Path) -> Iterator[torch.Tensor]:
    """The frames of a video file as uint8 (3, H, W) tensors, in presentation order."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            yield torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1)


def video_info(path: Path) -> dict:
    """Frame count, size, rate, timestamps (s), duration and audio of a video file, by demuxing."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        base = stream.time_base
        pts = sorted(p.pts for p in container.demux(stream) if p.pts is not None)
        audio = container.streams.audio
        return {
            "frames": len(pts),
            "width": stream.codec_context.width,
            "height": stream.codec_context.height,
            "fps": float(stream.average_rate) if stream.average_rate else None,
            "codec": stream.codec_context.name,
            "pts_s": [float(p * base) for p in pts],
            "duration_s": (len(pts) and float(pts[-1] * base) + 1 / FPS) or 0.0,
            "container_duration_s": container.duration / 1e6 if container.duration else None,
            "audio": [
                {
                    "codec": a.codec_context.name,
                    "rate": a.codec_context.sample_rate,
                    "duration_s": float(a.duration * a.time_base) if a.duration else None,
                }
                for a in audio
            ],
            "bytes": path.stat().st_size,
        }


def compare_streams(source: dict, output: dict) -> dict:
    """The checks of an output against its input: frames, size, rate, timestamps, duration, audio."""
    same_pts = len(source["pts_s"]) == len(output["pts_s"])
    max_shift = (
        max((abs(a - b) for a, b in zip(source["pts_s"], output["pts_s"], strict=True)), default=0.0)
        if same_pts
        else None
    )
    checks = {
        "frames": output["frames"] == source["frames"],
        "size": (output["width"], output["height"]) == (source["width"], source["height"]),
        "fps": output["fps"] is not None and abs(output["fps"] - source["fps"]) < 1e-3,
        "timestamps": max_shift is not None and max_shift < 0.5 / FPS,
        "duration": abs(output["duration_s"] - source["duration_s"]) <= 1 / FPS + 1e-6,
        "audio": len(output["audio"]) == len(source["audio"])
        and all(
            a["duration_s"] is None or b["duration_s"] is None or abs(a["duration_s"] - b["duration_s"]) < 0.05
            for a, b in zip(source["audio"], output["audio"], strict=True)
        ),
    }
    return {"ok": all(checks.values()), "checks": checks, "max_timestamp_shift_s": max_shift}


# -- 2. run colorize ------------------------------------------------------------------------


def colorize_command(
    inputs: list[Path], out_dir: Path, args: argparse.Namespace, method: str | None, video: bool = True
) -> list[str]:
    """The colorize command line (absolute paths: it runs in the repository root)."""
    cmd = [sys.executable, "-m", "colorization.colorize", *(str(p.resolve()) for p in inputs)]
    cmd += ["--ckpt", str(args.ckpt), "-o", str(out_dir.resolve()), "--overwrite"]
    if method is not None:
        cmd += ["--temporal", method]
    if args.batch_size is not None:
        cmd += ["--batch-size", str(args.batch_size)]
    if video and args.crf is not None:
        cmd += ["--crf", str(args.crf)]
    return cmd


_PRINTED_FPS = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*frames/s")


def run_child(cmd: list[str], timeout: float) -> dict:
    """Run ``cmd`` (cwd: the repository root): wall and CPU seconds, peak RSS (MiB), stdout."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=err)
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            timer.cancel()
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
    if proc.returncode != 0:
        tail = "\n".join(stderr.strip().splitlines()[-15:])
        raise SystemExit(f"failed (exit {proc.returncode}, {wall:.0f} s): {shlex.join(cmd)}\n{tail}")
    printed = _PRINTED_FPS.findall(stdout)
    return {
        "load_1min_after": round(os.getloadavg()[0], 2),
        "wall_s": round(wall, 3),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
        "printed_fps": float(printed[-1]) if printed else None,
        "stdout": stdout.strip()[-2000:],
        "stderr_tail": stderr.strip()[-500:],
    }


def colorize_clip(clip: Clip, path: Path, out_dir: Path, args: argparse.Namespace, method: str | None) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = colorize_command([path], out_dir, args, method)
    run = run_child(cmd, args.timeout)
    output = out_dir.resolve() / f"{path.stem}.mp4"
    if not output.is_file():
        raise SystemExit(f"colorize wrote no {output}: {shlex.join(cmd)}\n{run['stdout']}")
    run["fps_wall"] = round(clip.frames / run["wall_s"], 2)
    run["output"] = str(output)
    run["command"] = shlex.join([Path(c).name if i == 0 else str(c) for i, c in enumerate(cmd)])
    return run


def startup(work: Path, args: argparse.Namespace) -> dict:
    """colorize on one small PNG, ``args.repeats`` times: start-up + model loading (the fastest
    run), and the memory of that alone (the highest)."""
    from PIL import Image

    folder = work / "startup"
    folder.mkdir()
    Image.new("RGB", (64, 48), (120, 120, 120)).save(folder / "gray.png")
    cmd = colorize_command([folder / "gray.png"], folder / "out", args, None, video=False)
    tries = [run_child(cmd, args.timeout) for _ in range(args.repeats)]
    best = dict(min(tries, key=lambda r: r["wall_s"]))
    best["walls_s"] = [r["wall_s"] for r in tries]
    best["peak_rss_mib"] = max(r["peak_rss_mib"] for r in tries)
    return best


# -- 3. metrics -----------------------------------------------------------------------------


def correspondence(renderer: Renderer, t: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For the pair (t-1, t): the grid_sample grid (1, H, W, 2) of where each pixel of frame t was
    in frame t-1, and the valid mask (H, W) (both points ``BORDER_PX`` inside their frames)."""
    w, h = renderer.clip.width, renderer.clip.height
    s1, ou1, ov1 = renderer.affine(t)
    s0, ou0, ov0 = renderer.affine(t - 1)
    x = torch.arange(w, dtype=torch.float64) + 0.5
    y = torch.arange(h, dtype=torch.float64) + 0.5
    xp = (s1 * x + ou1 - ou0) / s0
    yp = (s1 * y + ov1 - ov0) / s0
    inside_x = (x >= BORDER_PX) & (x <= w - BORDER_PX) & (xp >= BORDER_PX) & (xp <= w - BORDER_PX)
    inside_y = (y >= BORDER_PX) & (y <= h - BORDER_PX) & (yp >= BORDER_PX) & (yp <= h - BORDER_PX)
    gx, gy = (2 * xp / w - 1).float(), (2 * yp / h - 1).float()
    grid = torch.stack((gx[None, :].expand(h, w), gy[:, None].expand(h, w)), dim=-1)[None]
    return grid, inside_y[:, None] & inside_x[None, :]


def flicker_map(ab: torch.Tensor, previous_ab: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """(H, W): || ab_t(x) - ab_{t-1}(y) ||, ab_{t-1} sampled bilinearly at y."""
    warped = F.grid_sample(previous_ab[None], grid, mode="bilinear", align_corners=False)[0]
    return (ab - warped).norm(dim=0)


def score_clip(clip: Clip, files: dict[str, Path], keep: tuple[int, ...] = ()) -> tuple[dict, dict]:
    """One pass over the clip: per frame and source (the truth, rendered again; ``files``: the
    decoded input, truth_h264 and each method's output; gray), dE2000 to the truth, the
    motion-compensated flicker of the pair (t-1, t) and each method's ab distance to ``none``.
    Returns (the scores, the frames and flicker maps of the frames in ``keep``)."""
    from colorization.color import rgb_u8_to_lab
    from colorization.metrics import ciede2000

    renderer = Renderer(clip)
    sources = [s for s in (*REFERENCES, *files) if s in ("truth", "gray", *files)]
    sources = list(dict.fromkeys(sources))
    streams = {name: decoded_frames(path) for name, path in files.items()}
    de = {s: [] for s in sources}
    flicker: dict[str, list[float | None]] = {s: [None] for s in sources}  # pair (t-1, t) at t
    to_none = {m: [] for m in files if m in METHODS and m != "none"} if "none" in files else {}
    previous: dict[str, torch.Tensor] = {}
    kept: dict[int, dict] = {}
    shots = [clip.locate(t)[0] for t in range(clip.frames)]
    decoded = 0
    try:
        for t in range(clip.frames):
            truth = rgb_u8_to_lab(renderer.render(t)[None])[0]
            labs = {"truth": truth}
            for name, stream in streams.items():
                frame = next(stream, None)
                if frame is None:
                    raise SystemExit(f"{name} of clip {clip.name}: {t} frames, {clip.frames} expected")
                if tuple(frame.shape[1:]) != (clip.height, clip.width):
                    raise SystemExit(f"{name} of clip {clip.name}: frames {tuple(frame.shape[1:])}")
                labs[name] = rgb_u8_to_lab(frame[None])[0]
            labs["gray"] = torch.cat((labs["input"][:1], torch.zeros_like(labs["input"][1:])))  # the input's L
            decoded += 1
            same_shot = t > 0 and shots[t] == shots[t - 1]
            grid, mask = correspondence(renderer, t) if same_shot else (None, None)
            maps = {}
            for name in sources:
                lab = labs[name]
                de[name].append(float(ciede2000(lab[None], truth[None]).mean()))
                if same_shot:
                    change = flicker_map(lab[1:], previous[name], grid)
                    flicker[name].append(float(change[mask].mean()))
                    maps[name] = change
                elif t > 0:
                    flicker[name].append(None)
                previous[name] = lab[1:]
            for name in to_none:
                to_none[name].append(float((labs[name][1:] - labs["none"][1:]).norm(dim=0).mean()))
            if t in keep:
                kept[t] = {"labs": {k: v.clone() for k, v in labs.items()}, "maps": maps}
        for name, stream in streams.items():
            if next(stream, None) is not None:
                raise SystemExit(f"{name} of clip {clip.name}: more than {clip.frames} frames")
    finally:
        for stream in streams.values():
            stream.close()

    def mean(values) -> float:
        values = [v for v in values if v is not None]
        return sum(values) / len(values)

    result = {
        "frames": clip.frames,
        "size": f"{clip.width}x{clip.height}",
        "what": clip.what,
        "cuts": clip.cuts,
        "photos": sorted({shot.photo for shot in clip.shots}),
        "sources": {
            name: {
                "flicker": round(mean(flicker[name]), 4),
                "de2000": round(mean(de[name]), 4),
                "flicker_per_pair": [None if v is None else round(v, 4) for v in flicker[name]],
                "de2000_per_frame": [round(v, 4) for v in de[name]],
            }
            for name in sources
        },
        "ab_distance_to_none_per_frame": {m: [round(v, 4) for v in d] for m, d in to_none.items()},
    }
    return result, kept


def cut_check(result: dict) -> dict:
    """Whether colour carries across the cut: the stabilised outputs against ``none``."""
    cut = result["cuts"][0]
    rows = {}
    for method, d in result["ab_distance_to_none_per_frame"].items():
        after1, after3 = d[cut], sum(d[cut : cut + 3]) / 3
        rows[method] = {
            "start_1": round(d[0], 3),
            "start_3": round(sum(d[0:3]) / 3, 3),
            "before_3": round(sum(d[cut - 3 : cut]) / 3, 3),
            "after_1": round(after1, 3),
            "after_3": round(after3, 3),
            "pass": after1 <= CUT_TOLERANCE_AB,
        }
    return {"cut_frame": cut, "tolerance_ab": CUT_TOLERANCE_AB, "methods": rows}


def acceptance(clips: dict) -> dict:
    rows = {}
    for name in PANNING:
        if name not in clips:
            continue
        sources = clips[name]["sources"]
        none = sources["none"]
        for method in ("ema", "flow"):
            if method not in sources:
                continue
            reduction = 1 - sources[method]["flicker"] / none["flicker"]
            de_change = sources[method]["de2000"] / none["de2000"] - 1
            floor = sources["truth"]["flicker"]
            excess = 1 - (sources[method]["flicker"] - floor) / max(1e-9, none["flicker"] - floor)
            rows.setdefault(name, {})[method] = {
                "flicker_none": none["flicker"],
                "flicker": sources[method]["flicker"],
                "flicker_reduction": round(reduction, 4),
                "excess_flicker_reduction": round(excess, 4),
                "de2000_none": none["de2000"],
                "de2000": sources[method]["de2000"],
                "de2000_change": round(de_change, 4),
                "flicker_pass": reduction >= FLICKER_REDUCTION_REQUIRED,
                "de2000_pass": de_change <= DE_INCREASE_ALLOWED,
            }
    return rows


# -- 4. long clips ---------------------------------------------------------------------------


def long_clips(work: Path, args: argparse.Namespace, state: State) -> list[dict]:
    rows = []
    for minutes in sorted({1.0, float(args.long_minutes)}):
        clip = long_clip(minutes)
        if clip.name in state["long"]:
            print(f"{clip.name}: reusing the result of an interrupted run", flush=True)
            rows.append(state["long"][clip.name])
            continue
        folder = work / clip.name
        folder.mkdir()
        path = folder / f"{clip.name}.mp4"
        print(f"{clip.name}: generating {clip.frames} frames at {clip.width}x{clip.height} ...", flush=True)
        generate_s = write_clip(clip, path, LONG_CRF, LONG_PRESET, audio=True, progress=minutes > 1)
        source = video_info(path)
        print(
            f"{clip.name}: {source['bytes'] / 1e6:.0f} MB in {generate_s:.0f} s; colouring with --temporal flow "
            f"(started {time.strftime('%H:%M')}) ...",
            flush=True,
        )
        run = colorize_clip(clip, path, folder / "out", args, "flow")
        output = video_info(Path(run["output"]))
        check = compare_streams(source, output)
        row = {
            "clip": clip.name,
            "what": clip.what,
            "frames": clip.frames,
            "size": f"{clip.width}x{clip.height}",
            "generate_s": round(generate_s, 1),
            "input_mb": round(source["bytes"] / 1e6, 1),
            "output_mb": round(output["bytes"] / 1e6, 1),
            **{k: run[k] for k in ("wall_s", "cpu_s", "peak_rss_mib", "printed_fps", "fps_wall", "command")},
            "memory_pass": run["peak_rss_mib"] < MEMORY_LIMIT_MIB,
            "stdout": run["stdout"][-300:],
            "input": {k: v for k, v in source.items() if k != "pts_s"},
            "output": {k: v for k, v in output.items() if k != "pts_s"},
            **check,
        }
        rows.append(row)
        state["long"][clip.name] = row
        state.save()
        print(
            f"{clip.name}: {run['wall_s']:.0f} s, {run['fps_wall']:.1f} frames/s (wall), colorize says "
            f"{run['printed_fps']} frames/s, peak RSS {run['peak_rss_mib']:.0f} MiB; output checks "
            f"{'ok' if check['ok'] else check['checks']}",
            flush=True,
        )
        shutil.rmtree(folder)
    return rows


# -- 5. figures and tables --------------------------------------------------------------------


def strip_figure(kept: dict[int, dict], path: Path, methods: tuple[str, ...] = ("none", "flow")) -> None:
    """Rows: kept frames; columns: truth | each method | each method's flicker map (0..10 ab -> black..white)."""
    from PIL import Image, ImageDraw

    from colorization.color import lab_to_rgb
    from colorization.io import save_image_atomic

    tiles_rows, label_h = [], 14
    for t, item in sorted(kept.items()):
        row = []
        for name in ("truth", *methods):
            rgb = lab_to_rgb(item["labs"][name][None])[0]
            row.append((rgb * 255).round().byte().permute(1, 2, 0).numpy())
        for name in methods:
            change = item["maps"].get(name)
            if change is None:
                change = torch.zeros(row[0].shape[:2])
            gray = (change / 10).clamp(0, 1).mul(255).round().byte().numpy()
            row.append(np.repeat(gray[..., None], 3, axis=2))
        tiles_rows.append((t, row))
    h, w = tiles_rows[0][1][0].shape[:2]
    cols = 1 + 2 * len(methods)
    sheet = Image.new("RGB", (w * cols, (h + label_h) * len(tiles_rows)), "white")
    draw = ImageDraw.Draw(sheet)
    titles = ["truth", *methods, *(f"|dab| {m} (0-10)" for m in methods)]
    for r, (t, row) in enumerate(tiles_rows):
        y = r * (h + label_h)
        for c, tile in enumerate(row):
            sheet.paste(Image.fromarray(tile), (c * w, y + label_h))
            draw.text((c * w + 3, y + 1), f"{titles[c]}, frame {t}", fill="black")
    sheet = sheet.resize((sheet.width * 4 // 5, sheet.height * 4 // 5), Image.Resampling.LANCZOS)  # < 300 KB
    save_image_atomic(np.asarray(sheet), path, quality=85)


def flicker_figure(clips: dict, path: Path, names: tuple[str, ...]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from colorization.io import atomic_path

    names = tuple(n for n in names if n in clips)
    fig, axes = plt.subplots(1, len(names), figsize=(5.2 * len(names), 3.4), squeeze=False)
    styles = {
        "truth": ("k", ":"),
        "truth_h264": ("gray", "--"),
        "none": ("tab:red", "-"),
        "ema": ("tab:orange", "-"),
        "flow": ("tab:blue", "-"),
    }
    for ax, name in zip(axes[0], names, strict=True):
        sources = clips[name]["sources"]
        for source, (colour, line) in styles.items():
            if source not in sources:
                continue
            values = sources[source]["flicker_per_pair"]
            xs = [t for t, v in enumerate(values) if v is not None]
            label = "truth, H.264 as colorize writes" if source == "truth_h264" else source
            ax.plot(xs, [values[t] for t in xs], color=colour, linestyle=line, lw=1.4, label=label)
        for cut in clips[name]["cuts"]:
            ax.axvline(cut, color="gray", lw=0.8, linestyle="--")
        ax.set_title(f"{name} ({clips[name]['what']})", fontsize=8)
        ax.set_xlabel("frame t (pair t-1, t)")
        ax.set_ylabel("flicker, mean |d ab| (motion-compensated)")
        ax.grid(alpha=0.3)
        ax.set_ylim(bottom=0)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)


def _pct(x: float) -> str:
    return f"{x * 100:+.1f} %"


def summary(results: dict) -> str:
    settings, machine = results["settings"], results["machine"]
    lines = [
        f"# Video colouring benchmark ({results['date']})",
        "",
        f"`{results['command']}`; checkpoint `{settings['ckpt']}`; {machine['cores']} CPU cores "
        f"({machine['cpu']}), torch {machine['torch']}, PyAV {machine['av']}; load average at start "
        f"{machine['load_average_start']}, at end {machine.get('load_average_end')}"
        + (
            f"; stopped and resumed {results['resumed']} time(s) (finished parts kept)."
            if results.get("resumed")
            else "."
        ),
        "",
        f"Start-up (colorize on one 64x48 PNG: Python, imports, loading the model; fastest of {settings['repeats']}): "
        f"{results['startup']['wall_s']:.1f} s, peak RSS {results['startup']['peak_rss_mib']:.0f} MiB.",
        "",
        "## Per clip and method",
        "",
        "flicker: mean motion-compensated |d ab| between consecutive frames (Lab units); "
        "dE2000: mean CIEDE2000 to the noiseless truth; fps (wall): frames / wall time of the whole "
        "colorize process (start-up included); fps (colorize): as colorize prints it (without start-up); CPU s: "
        f"user + system of that process; the fastest of {settings['repeats']} runs (the CPU is shared), peak RSS "
        "the highest.",
        "",
        "| clip | frames | source | flicker | vs none | dE2000 | vs none | fps (wall) | fps (colorize) | CPU s "
        "| peak RSS MiB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, clip in results["clips"].items():
        sources, runs = clip["sources"], results["runs"].get(name, {})
        base = sources.get("none")
        for source, values in sources.items():
            label = {
                "truth": "truth (floor)",
                "truth_h264": "truth, H.264 as colorize writes",
                "input": "input (decoded)",
                "gray": "gray (ab = 0)",
            }.get(source, source)
            vs_f = vs_d = "-"
            if base and source in METHODS and source != "none":
                vs_f = _pct(values["flicker"] / base["flicker"] - 1)
                vs_d = _pct(values["de2000"] / base["de2000"] - 1)
            run = runs.get(source)
            timing = ["-"] * 4
            if run:
                printed = f"{run['printed_fps']}" if run["printed_fps"] else "-"
                timing = [f"{run['fps_wall']:.1f}", printed, f"{run['cpu_s']:.0f}", f"{run['peak_rss_mib']:.0f}"]
            lines.append(
                f"| {name} | {clip['frames']} | {label} | {values['flicker']:.3f} | {vs_f} | {values['de2000']:.3f} "
                f"| {vs_d} | " + " | ".join(timing) + " |"
            )
    diffs = [
        (run["repeat_diff_rgb"], clip, method)
        for clip, runs in results["runs"].items()
        for method, run in runs.items()
        if run.get("repeat_diff_rgb")
    ]
    if diffs:
        (worst, clip, method), mean = max(diffs, key=lambda d: d[0][0]), max(d[0][1] for d in diffs)
        lines += [
            "",
            f"Repeated runs of colorize on the same clip give outputs that differ by up to {worst[0]} RGB levels "
            f"({clip}, {method}), {mean:.2f} on average at most (colorize's libx264 does not encode the same frames "
            "the same way twice): the scores above are of the fastest run's output.",
        ]
    lines += [
        "",
        f"## Acceptance: flicker at least {FLICKER_REDUCTION_REQUIRED:.0%} lower than per-frame (none), "
        f"dE2000 at most {DE_INCREASE_ALLOWED:.0%} higher",
        "",
        "excess change: the change of the flicker above the truth's (the floor: resampling alone).",
        "",
        "| clip | method | flicker none | flicker | change | excess change | dE2000 none | dE2000 | change "
        "| flicker | dE2000 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, methods in results["acceptance"].items():
        for method, row in methods.items():
            lines.append(
                f"| {name} | {method} | {row['flicker_none']:.3f} | {row['flicker']:.3f} | "
                f"{_pct(-row['flicker_reduction'])} | {_pct(-row['excess_flicker_reduction'])} | "
                f"{row['de2000_none']:.3f} | {row['de2000']:.3f} | {_pct(row['de2000_change'])} | "
                f"{'PASS' if row['flicker_pass'] else 'FAIL'} | {'PASS' if row['de2000_pass'] else 'FAIL'} |"
            )
    cut = results.get("cut_check")
    if cut:
        lines += [
            "",
            f"## Scene cut (clip `cut`, cut at frame {cut['cut_frame']}): mean ab distance to per-frame (none)",
            "",
            f"PASS: at most {cut['tolerance_ab']} ab units on the first frame after the cut. For contrast: the "
            "first frames of the clip (no history there either: what the two outputs' H.264 encodes alone "
            "differ by) and the 3 frames before the cut (smoothing at work).",
            "",
            "| method | clip start, 1 frame | clip start, 3 | 3 before the cut | after the cut, 1 frame | after, 3 "
            "| cut |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for method, row in cut["methods"].items():
            lines.append(
                f"| {method} | {row['start_1']:.3f} | {row['start_3']:.3f} | {row['before_3']:.3f} | "
                f"{row['after_1']:.3f} | {row['after_3']:.3f} | {'PASS' if row['pass'] else 'FAIL'} |"
            )
    if results.get("long"):
        lines += [
            "",
            f"## Long clips ({results['long'][0]['size']}, 24 frames/s, AAC audio), `--temporal flow`",
            "",
            "| clip | frames | input MB | wall | fps (wall) | fps (colorize) | CPU s | peak RSS MiB | "
            f"< {MEMORY_LIMIT_MIB / 1024:.1f} GiB | output checks |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for row in results["long"]:
            checks = "ok (frames, size, fps, timestamps, duration, audio)" if row["ok"] else str(row["checks"])
            lines.append(
                f"| {row['clip']} | {row['frames']} | {row['input_mb']:.0f} | {row['wall_s'] / 60:.1f} min | "
                f"{row['fps_wall']:.1f} | {row['printed_fps'] or '-'} | {row['cpu_s']:.0f} | "
                f"{row['peak_rss_mib']:.0f} | {'PASS' if row['memory_pass'] else 'FAIL'} | {checks} |"
            )
    lines.append(f"\nTotal time {results['total_seconds'] / 60:.1f} min.")
    return "\n".join(lines)


# -- main --------------------------------------------------------------------------------------


class State:
    """Progress saved after each finished part (start-up, a clip, a long clip) to ``path``, so a
    run stopped part-way (the CPU is shared; someone may stop it) and started again with the same
    settings goes on where it stopped; removed when the run completes."""

    def __init__(self, path: Path, signature: dict, fresh: bool = False) -> None:
        self.path, self.started = path, time.perf_counter()
        saved = json.loads(path.read_text()) if path.is_file() and not fresh else {}
        if saved.get("signature") == signature:
            self.data = saved
            self.data["resumed"] += 1
            print(f"resuming an interrupted run: {', '.join(saved['clips']) or 'start-up'} done ({path})", flush=True)
        else:
            self.data = {"signature": signature, "clips": {}, "long": {}, "elapsed_s": 0.0, "resumed": 0}
        self.before = self.data["elapsed_s"]

    def __getitem__(self, key: str):
        return self.data[key]

    def __setitem__(self, key: str, value) -> None:
        self.data[key] = value

    def elapsed(self) -> float:
        return self.before + time.perf_counter() - self.started

    def save(self) -> None:
        from colorization.io import write_text_atomic

        self.data["elapsed_s"] = self.elapsed()
        write_text_atomic(self.path, json.dumps(self.data) + "\n")


def benchmark_clip(clip: Clip, work: Path, args: argparse.Namespace, strip: Path | None) -> dict:
    """Write the clip, colour it ``args.repeats`` times per method, score it; ``strip``: write
    the figure of its frames there. -> {"scores": ..., "runs": ...}."""
    path = work / "clips" / f"{clip.name}.mp4"
    path.parent.mkdir(exist_ok=True)
    seconds = write_clip(clip, path)
    print(f"{clip.name}: {clip.frames} frames {clip.width}x{clip.height} written in {seconds:.1f} s", flush=True)
    source = video_info(path)
    truth_h264 = path.with_name(f"{clip.name}_truth_h264.mp4")
    write_clip(clip, truth_h264, args.crf or OUTPUT_CRF, OUTPUT_PRESET, noisy=False)
    tries: dict[str, list[dict]] = {m: [] for m in METHODS}
    for _ in range(args.repeats):  # methods interleaved: contention spreads over all three
        for method in METHODS:
            run = colorize_clip(clip, path, work / "out" / method, args, method)
            frames = torch.stack(list(decoded_frames(Path(run["output"]))))
            if tries[method]:  # how far this run's output is from the first run's (RGB 0..255)
                first = tries[method][0]["frames"]
                diff = (frames.int() - first.int()).abs() if frames.shape == first.shape else None
                run["diff_to_first"] = None if diff is None else [int(diff.max()), round(float(diff.float().mean()), 4)]
            run["frames"] = frames
            tries[method].append(run)
            print(
                f"  {method:>4}: {run['wall_s']:.1f} s, {run['fps_wall']:.1f} frames/s (wall), colorize says "
                f"{run['printed_fps']}, peak RSS {run['peak_rss_mib']:.0f} MiB, load {run['load_1min_after']}",
                flush=True,
            )
    runs, outputs = {}, {"input": path, "truth_h264": truth_h264}
    for method, done in tries.items():
        run = dict(min(done, key=lambda r: r["wall_s"]))  # the fastest: the least disturbed
        run["walls_s"] = [r["wall_s"] for r in done]
        run["peak_rss_mib"] = max(r["peak_rss_mib"] for r in done)
        diffs = [r.get("diff_to_first") for r in done[1:]]
        run["repeat_diff_rgb"] = (  # [max, mean] |difference| of the later runs' outputs to the first's
            None if not diffs or None in diffs else [max(d[0] for d in diffs), max(d[1] for d in diffs)]
        )
        run["stream_checks"] = compare_streams(source, video_info(Path(run["output"])))
        if not run["stream_checks"]["ok"]:
            print(f"  {method}: output checks FAILED {run['stream_checks']['checks']}", flush=True)
        runs[method], outputs[method] = run, Path(run["output"])
    keep = (1, clip.frames // 2, clip.frames - 1) if strip is not None else ()
    scored, kept = score_clip(clip, outputs, keep)
    print(
        "  " + ", ".join(f"{s} flicker {v['flicker']:.3f} dE {v['de2000']:.2f}" for s, v in scored["sources"].items()),
        flush=True,
    )
    if strip is not None:
        strip_figure(kept, strip)
    drop = ("output", "frames", "diff_to_first")
    return {"scores": scored, "runs": {m: {k: v for k, v in r.items() if k not in drop} for m, r in runs.items()}}


def has_temporal() -> bool:
    try:
        text = subprocess.run(
            [sys.executable, "-m", "colorization.colorize", "--help"], cwd=ROOT, capture_output=True, text=True
        ).stdout
    except OSError:
        return False
    return "--temporal" in text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--ckpt", type=Path, default=DEFAULT_CKPT, help="checkpoint (default: the natural-photos recipe)"
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 clips of 24 frames at 160x120, no long clip")
    parser.add_argument(
        "--long", action=argparse.BooleanOptionalAction, default=True, help="the long clips (default on)"
    )
    parser.add_argument("--long-minutes", type=float, default=10.0, help="length of the long clip (default 10)")
    parser.add_argument("--batch-size", type=int, default=None, help="colorize --batch-size (default: its own, 4)")
    parser.add_argument(
        "--repeats", type=int, default=None, help="colorize runs per short clip and method, fastest kept (default 3)"
    )
    parser.add_argument("--crf", type=int, default=None, help=f"colorize --crf (default: its own, {OUTPUT_CRF})")
    parser.add_argument(
        "--fresh", action="store_true", help="ignore the saved progress of an interrupted run with the same settings"
    )
    parser.add_argument("--timeout", type=float, default=3 * 3600, help="seconds allowed to one colorize run")
    args = parser.parse_args()
    if not SHARED.is_dir():
        raise SystemExit(f"{SHARED} is absent: this benchmark makes its clips from the photos of ../shared/data")
    missing = sorted({p for p in PHOTOS.values() if not (SHARED / p).is_file()})
    if missing:
        raise SystemExit(f"photos absent from {SHARED}: {', '.join(missing)}")
    if any(p.startswith(TRAINED_ON) for p in PHOTOS.values()):
        raise SystemExit("a test photo is in a training folder")  # a guard against editing PHOTOS carelessly
    args.ckpt = args.ckpt.expanduser().resolve()
    if not args.ckpt.is_file():
        raise SystemExit(
            f"checkpoint {args.ckpt} not found: train it with `python experiments/natural_photos/run.py --train` "
            "(or pass --ckpt)"
        )
    if not has_temporal():
        raise SystemExit("this colorize has no --temporal option (no video support): nothing to benchmark")

    import av
    import PIL

    from colorization.io import write_text_atomic
    from colorization.runtime import signals_interrupt

    args.repeats = args.repeats or (1 if args.quick else 3)
    if args.quick:
        args.long = False
        clips = [c for c in default_clips(160, 120, 24) if c.name in ("pan_a", "cut")]
        out = HERE / "output" / "quick"
    else:
        clips = default_clips(320, 240, 72)
        out = HERE / "output"
    out.mkdir(parents=True, exist_ok=True)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    signature = {
        "clips": [repr(c) for c in clips],
        "ckpt": str(args.ckpt),
        "ckpt_mtime": args.ckpt.stat().st_mtime,
        **{k: getattr(args, k) for k in ("repeats", "crf", "batch_size", "long", "long_minutes")},
    }
    state = State(out / "resume.partial.json", signature, fresh=args.fresh)
    try:
        ckpt_label = str(args.ckpt.relative_to(ROOT))
    except ValueError:
        ckpt_label = str(args.ckpt)
    results: dict = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
        "machine": {
            "cores": cores,
            "cpu": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "av": av.__version__,
            "pillow": PIL.__version__,
            "torch_threads": torch.get_num_threads(),
            "load_average_start": [round(x, 2) for x in os.getloadavg()],
        },
        "settings": {
            "ckpt": ckpt_label,
            "methods": list(METHODS),
            "fps": FPS,
            "clip_encoding": {
                "codec": "libx264",
                "pix_fmt": "yuv420p",
                "crf": CLIP_CRF,
                "preset": CLIP_PRESET,
                "x264-params": "mbtree=0",
            },
            "truth_h264_encoding": {"crf": args.crf or OUTPUT_CRF, "preset": OUTPUT_PRESET, "x264-params": "mbtree=0"},
            "long_encoding": {"codec": "libx264", "crf": LONG_CRF, "preset": LONG_PRESET, "audio": "aac mono"},
            "border_px": BORDER_PX,
            "batch_size": args.batch_size,
            "repeats": args.repeats,
            "output_crf": args.crf or OUTPUT_CRF,
            "photos": PHOTOS,
        },
        "clips": {},
        "runs": {},
    }
    strip_clip = "noisy_pan" if any(c.name == "noisy_pan" for c in clips) else clips[0].name
    # SIGTERM / SIGINT: an exception, so the child is stopped and the temporary folder removed
    with signals_interrupt(), tempfile.TemporaryDirectory(prefix="colorization-video-") as scratch:
        work = Path(scratch)
        if "startup" not in state.data:
            print("start-up: colorize on one small PNG ...", flush=True)
            state["startup"] = startup(work, args)
            state.save()
        results["startup"] = state["startup"]
        print(f"start-up: {results['startup']['wall_s']:.1f} s, peak RSS {results['startup']['peak_rss_mib']:.0f} MiB")
        for clip in clips:
            if clip.name in state["clips"]:
                print(f"{clip.name}: reusing the scores of an interrupted run ({state.path.name})", flush=True)
            else:
                strip = out / "strip.jpg" if clip.name == strip_clip else None
                state["clips"][clip.name] = benchmark_clip(clip, work, args, strip)
                state.save()
            results["clips"][clip.name] = state["clips"][clip.name]["scores"]
            results["runs"][clip.name] = state["clips"][clip.name]["runs"]
        results["acceptance"] = acceptance(results["clips"])
        if "cut" in results["clips"]:
            results["cut_check"] = cut_check(results["clips"]["cut"])
        flicker_figure(results["clips"], out / "flicker.png", ("pan_a", "noisy_pan", "cut"))
        if args.long:
            results["long"] = long_clips(work, args, state)
    results["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    results["total_seconds"] = round(state.elapsed(), 1)
    results["resumed"] = state["resumed"]
    text = summary(results)
    write_text_atomic(out / "results.json", json.dumps(results, indent=1) + "\n")
    write_text_atomic(out / "results.md", text + "\n")
    state.path.unlink(missing_ok=True)
    print()
    print(text)


if __name__ == "__main__":
    from colorization.runtime import Interrupted

    try:
        main()
    except Interrupted as stop:
        print(f"stopped by {stop}: the parts finished are saved; the same command goes on from there", flush=True)
        sys.exit(stop.exit_code)
