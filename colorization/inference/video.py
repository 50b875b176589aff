"""Video files through the colorizer, frame by frame, in bounded memory.

``colorize clip.mp4 --ckpt CKPT -o out/`` decodes the first video stream with PyAV (FFmpeg),
colours its frames in batches of ``--batch-size`` at the working size (aspect ratio kept, as
photos), stabilises the predicted chroma along time (:mod:`colorization.inference.temporal`,
``--temporal flow|ema|none``), joins it with each frame's own full-resolution L and encodes
H.264 (libx264, ``--crf``) into ``out/clip.mp4``:

* the same size, the same frame timestamps (so the same frame rate, variable rates included,
  and the same duration; shifted so the earliest stream starts at 0, as a clip cut from a
  broadcast starts at 100 s), the same display rotation (a phone's portrait video stays
  portrait), yuv420p (yuv444p for an odd width or height, which 4:2:0 cannot hold: fewer
  players show those);
* the first audio stream copied packet for packet; an audio codec MP4 cannot hold (e.g. PCM)
  is re-encoded to AAC, and the line printed for the video says so. Other streams (subtitles,
  more audio tracks, data) are not kept;
* written atomically (a hidden temporary file renamed when complete): a failure or a stop
  leaves no partial video and never touches an existing file;
* streaming: a batch of frames, the encoder's look-ahead and one previous frame for the
  stabiliser are all that is held, whatever the length.

The file is untrusted: only the container formats in :data:`DEMUXERS` are opened and only
local files are read (FFmpeg's ``format_whitelist`` / ``protocol_whitelist``: a playlist
cannot make FFmpeg fetch or read anything else), frames larger than ``--max-pixels`` are
refused before decoding, and a file that cannot be decoded to the end (corrupt, truncated:
fewer frames in it than its header announces, no decoder for its codec) is an error that names
it, with no output written. Not detected: a truncated Matroska/WebM/TS file (their headers do
not count frames) is coloured up to where it ends.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from colorization.data.images import ImageTooLarge, check_pixels
from colorization.inference.fullres import compose_full_resolution
from colorization.inference.temporal import TemporalStabilizer
from colorization.io import atomic_path

#: file suffixes taken as videos (folders, globs); a named file with another suffix is a photo
VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".mts", ".m2ts")
#: FFmpeg demuxers a video may be read with (MP4/MOV, Matroska/WebM, AVI, MPEG-PS/TS)
DEMUXERS = ("mov", "mp4", "matroska", "webm", "avi", "mpeg", "mpegts")
_OPEN_OPTIONS = {"format_whitelist": ",".join(DEMUXERS), "protocol_whitelist": "file"}
#: audio codecs an MP4 holds as they are (others are re-encoded to AAC)
MP4_AUDIO = ("aac", "mp3", "ac3", "eac3", "alac", "opus", "flac")
#: written into every output video's metadata (``comment``), to recognise it later
VIDEO_MARK = "colorization colorize"
#: seconds between progress lines on long videos
PROGRESS_EVERY_S = 30.0


class UnreadableVideo(ValueError):
    """A video that cannot be colorized (corrupt, truncated, too large, no video stream)."""


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTENSIONS


def open_video(path: Path):
    """PyAV input container for an untrusted file (see the module notes) or :class:`UnreadableVideo`."""
    import av

    try:
        # "file:" + an absolute path: a name such as "take:1.mp4" is a file, never a protocol
        return av.open("file:" + str(Path(path).absolute()), options=dict(_OPEN_OPTIONS))
    except (av.FFmpegError, OSError, ValueError, UnicodeDecodeError) as error:
        raise UnreadableVideo(
            f"{path}: not a readable video in a container read here (MP4/MOV, Matroska/WebM, AVI, MPEG-PS/TS; "
            f"FFmpeg: {_reason(error)})"
        ) from None


def _reason(error: BaseException) -> str:
    import av

    if isinstance(error, av.FFmpegError):
        return getattr(error, "strerror", None) or type(error).__name__
    return f"{type(error).__name__}: {error}"


def is_own_video(path: Path) -> bool:
    """Whether ``path`` is a video this program wrote (its metadata carries :data:`VIDEO_MARK`)."""
    try:
        with open_video(path) as container:
            return container.metadata.get("comment") == VIDEO_MARK
    except Exception:  # noqa: BLE001 - not a video we wrote
        return False


@dataclass
class VideoResult:
    width: int
    height: int
    frames: int
    seconds: float
    cuts: int
    audio: str  # "copied", "re-encoded to AAC (pcm_s16le)" or "none"

    def line(self, source: Path, output: Path) -> str:
        rate = self.frames / self.seconds if self.seconds > 0 else 0.0
        cuts = f", {self.cuts} scene cuts" if self.cuts else ""
        return (
            f"{source} -> {output} ({self.width}x{self.height}, {self.frames} frames, audio {self.audio}{cuts}, "
            f"{self.seconds:.1f} s, {rate:.1f} frames/s)"
        )


def _even(n: int) -> bool:
    return n % 2 == 0


def _video_stream(container, source: Path):
    """The first video stream that is not cover art, with a decoder."""
    import av

    streams = [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
    if not streams:
        raise UnreadableVideo(f"{source}: no video stream")
    if streams[0].codec_context is None:
        raise UnreadableVideo(f"{source}: no decoder here for its video codec")
    return streams[0]


def _checked_stream(container, source: Path, max_pixels: int | None):
    """The video stream (:func:`_video_stream`) once its declared frame size is checked against
    ``max_pixels``, before any frame is decoded; its decoder refuses larger frames too."""
    vin = _video_stream(container, source)
    width, height = vin.codec_context.width, vin.codec_context.height
    if not width or not height:
        raise UnreadableVideo(f"{source}: its video stream has no frame size")
    try:
        check_pixels(source, width, height, max_pixels)
    except ImageTooLarge as error:
        raise UnreadableVideo(str(error)) from None
    vin.codec_context.options = {"max_pixels": str(max_pixels)} if max_pixels else {}
    return vin


def _rotation(source: Path, max_pixels: int | None) -> int:
    """The display rotation of the first frame (phones store portrait video sideways with a
    display matrix), read before the output is set up: decoding one frame (of a checked size)."""
    with open_video(source) as container:
        for frame in container.decode(_checked_stream(container, source, max_pixels)):
            return int(getattr(frame, "rotation", 0) or 0)
    return 0


def colorize_video(
    source: Path,
    output: Path,
    predict: Callable[[list[np.ndarray]], list[tuple]],
    args: argparse.Namespace,
) -> VideoResult:
    """Colour ``source`` into ``output`` (MP4). ``predict(frames)`` returns, per frame, the
    network's (normalised L (1, h, w), ab (2, h, w)) at the working size. Raises
    :class:`UnreadableVideo` for a bad input; nothing is written then."""
    import av

    start = time.perf_counter()
    stabilizer = TemporalStabilizer(getattr(args, "temporal", "flow"))
    try:
        rotation = _rotation(source, args.max_pixels)
    except av.FFmpegError as error:
        raise UnreadableVideo(f"{source}: cannot be decoded ({_reason(error)})") from None
    with open_video(source) as container:
        vin = _checked_stream(container, source, args.max_pixels)
        width, height = vin.codec_context.width, vin.codec_context.height
        vin.thread_type = "AUTO"
        ain = next((s for s in container.streams.audio if s.codec_context is not None), None)
        rate = vin.average_rate or vin.guessed_rate or Fraction(25)
        time_base = vin.time_base or 1 / Fraction(rate)
        # timestamps start at 0 in the output (a clip cut from a broadcast may start at 100 s)
        starts = [s.start_time * s.time_base for s in (vin, ain) if s is not None and s.start_time is not None]
        origin = min(starts) if starts else 0
        video_shift = round(origin / time_base)
        audio_shift = round(origin / ain.time_base) if ain is not None and ain.time_base else 0
        expected, packets = vin.frames, 0
        frames_done, last_pts, next_progress = 0, None, start + PROGRESS_EVERY_S
        with atomic_path(output) as tmp:
            out = av.open(str(tmp), "w", format="mp4")
            try:
                out.metadata["comment"] = VIDEO_MARK
                vout = out.add_stream("libx264", rate=rate)
                vout.width, vout.height = width, height
                vout.pix_fmt = "yuv420p" if _even(width) and _even(height) else "yuv444p"
                vout.codec_context.time_base = time_base
                vout.options = {"crf": str(getattr(args, "crf", 18)), "preset": "fast"}
                if rotation and hasattr(vout, "set_display_rotation"):
                    vout.set_display_rotation(rotation)  # shown as the input is shown
                audio, aout, resample = "none", None, None
                if ain is not None:
                    name = ain.codec_context.codec.canonical_name  # mp3, not the decoder's mp3float
                    if name in MP4_AUDIO:
                        aout, audio = out.add_stream_from_template(ain), "copied"
                    else:
                        aout = out.add_stream("aac", rate=ain.codec_context.sample_rate or 48000)
                        channels = ain.codec_context.layout.nb_channels
                        aout.layout = {1: "mono", 2: "stereo", 6: "5.1"}.get(channels, "stereo")
                        audio, resample = f"re-encoded to AAC ({name})", True

                def write(frames: list[np.ndarray], stamps: list[tuple[int | None, int]]) -> None:
                    nonlocal frames_done, last_pts
                    for rgb_u8, (pts, duration), (l_norm, ab) in zip(frames, stamps, predict(frames), strict=True):
                        ab = stabilizer(l_norm, ab)
                        picture = av.VideoFrame.from_ndarray(
                            compose_full_resolution(rgb_u8, ab, args.saturation), format="rgb24"
                        )
                        pts = None if pts is None else pts - video_shift
                        if pts is None or (last_pts is not None and pts <= last_pts):
                            pts = 0 if last_pts is None else last_pts + 1
                        picture.pts, picture.time_base, last_pts = pts, time_base, pts
                        if duration:  # the last frame's duration is the video's last bit of duration
                            picture.duration = duration
                        out.mux(vout.encode(picture))
                        frames_done += 1

                batch: list[np.ndarray] = []
                stamps: list[tuple[int | None, int]] = []
                for packet in container.demux(*(s for s in (vin, ain) if s is not None)):
                    if packet.stream is ain:  # the last packet of each stream (empty) flushes its decoder
                        if resample:
                            for frame in packet.decode():
                                if frame.pts is not None:
                                    frame.pts -= audio_shift
                                out.mux(aout.encode(frame))
                        elif packet.size:
                            if packet.pts is not None:
                                packet.pts -= audio_shift
                            if packet.dts is not None:
                                packet.dts -= audio_shift
                            packet.stream = aout
                            out.mux(packet)
                        continue
                    packets += packet.size > 0  # frames an edit list trims are demuxed, not shown
                    for frame in packet.decode():
                        batch.append(frame.to_ndarray(format="rgb24", width=width, height=height))
                        stamps.append((frame.pts, frame.duration))
                    if len(batch) >= args.batch_size:
                        write(batch, stamps)
                        batch, stamps = [], []
                        if time.perf_counter() > next_progress:
                            total = f"/{expected}" if expected else ""
                            print(f"{source}: {frames_done}{total} frames", flush=True)
                            next_progress = time.perf_counter() + PROGRESS_EVERY_S
                if batch:
                    write(batch, stamps)
                out.mux(vout.encode(None))
                if resample:
                    out.mux(aout.encode(None))
                if frames_done == 0:
                    raise UnreadableVideo(f"{source}: no frame could be decoded")
                if expected and packets < expected:
                    raise UnreadableVideo(
                        f"{source}: truncated or damaged: {packets} of the {expected} frames its header "
                        "announces are in the file"
                    )
                out.close()
            except av.FFmpegError as error:
                _close_quietly(out)
                raise UnreadableVideo(f"{source}: cannot be decoded or written ({_reason(error)})") from None
            except (ValueError, TypeError) as error:  # PyAV on a stream it cannot describe
                _close_quietly(out)
                raise UnreadableVideo(f"{source}: cannot be colorized ({type(error).__name__}: {error})") from None
            except BaseException:
                _close_quietly(out)
                raise
    return VideoResult(width, height, frames_done, time.perf_counter() - start, stabilizer.cuts, audio)


def _close_quietly(container) -> None:
    try:
        container.close()
    except Exception:  # noqa: BLE001 - the output is being discarded anyway
        pass
