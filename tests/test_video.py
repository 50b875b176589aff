"""``colorize`` on video files: what is kept (frames, size, timestamps, audio), bad videos,
outputs that never replace inputs, and the temporal stabiliser on its own."""

from __future__ import annotations

import hashlib
import signal
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from colorization.colorize import main
from colorization.inference import video as video_module
from colorization.inference.temporal import TemporalStabilizer
from colorization.runtime import Interrupted
from tests.helpers import peak_rss_growth, tiny_checkpoint


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("skip_cae"), "model.net.width=8", "model.net.depth=2")


def pan(photo: np.ndarray, n: int, width: int, height: int, step: float = 1.5) -> list[np.ndarray]:
    """``n`` frames of a slow horizontal pan over ``photo`` (sub-pixel steps, bilinear)."""
    image = Image.fromarray(photo)
    frames = []
    for t in range(n):
        x = 4 + t * step
        frames.append(np.asarray(image.transform((width, height), Image.Transform.AFFINE, (1, 0, x, 0, 1, 4),
                                                 Image.Resampling.BILINEAR)))  # fmt: skip
    return frames


def write_clip(
    path: Path, frames: list[np.ndarray], rate: Fraction = Fraction(24), pts: list[int] | None = None,
    audio: str | None = "aac", fmt: str = "mp4", faststart: bool = False, rotation: int = 0,
) -> None:  # fmt: skip
    """A real H.264 clip (and a sine audio track of the same duration, ``audio`` = its codec)."""
    height, width = frames[0].shape[:2]
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), "w", format=fmt, options=options) as out:
        video = out.add_stream("libx264", rate=rate)
        video.width, video.height = width, height
        video.pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
        video.codec_context.time_base = 1 / rate
        if rotation:
            video.set_display_rotation(rotation)
        sound = None
        if audio:
            sound = out.add_stream(audio, rate=16000)
            sound.layout = "mono"
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame.pts, frame.time_base = (i if pts is None else pts[i]), 1 / rate
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        if sound is not None:
            seconds = float(len(frames) / rate)
            wave = (0.3 * np.sin(2 * np.pi * 440 * np.arange(int(16000 * seconds)) / 16000)).astype(np.float32)
            for start in range(0, len(wave), 1024):
                chunk = av.AudioFrame.from_ndarray(wave[None, start : start + 1024], format="flt", layout="mono")
                chunk.sample_rate, chunk.pts = 16000, start
                out.mux(sound.encode(chunk))
            out.mux(sound.encode(None))


def probe(path: Path) -> dict:
    """What a user checks in a video: frames, size, rate, timestamps (s), duration, audio packets."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        info = {"width": stream.codec_context.width, "height": stream.codec_context.height,
                "rate": stream.average_rate, "audio": None, "mark": container.metadata.get("comment"),
                "seconds": container.duration / 1e6}  # fmt: skip
        audio = container.streams.audio[0] if container.streams.audio else None
        if audio is not None:
            info["audio"] = (audio.codec_context.name, audio.codec_context.sample_rate)
        times, packets, luma = [], [], []
        for packet in container.demux(*container.streams):
            if packet.stream.type == "audio" and packet.dts is not None:
                packets.append(bytes(packet))
            elif packet.stream.type == "video":
                for frame in packet.decode():
                    times.append(float(frame.pts * frame.time_base))
                    luma.append(l_of(frame.to_ndarray(format="rgb24")).numpy() * 50 + 50)  # Lab L
        info.update(times=times, frames=len(times), audio_packets=packets, luma=luma)
    return info


def test_video_keeps_frames_size_rate_timestamps_duration_and_audio(ckpt, photos, tmp_path, capsys):
    # NTSC's 30000/1001 rate, and a second clip with variable frame timing
    frames = pan(photos["astronaut"], 24, 96, 64)
    (tmp_path / "in").mkdir()
    write_clip(tmp_path / "in" / "pan.mp4", frames, rate=Fraction(30000, 1001))
    irregular = [0, 1, 2, 4, 5, 8, 9, 10, 14, 15, 16, 17]
    write_clip(tmp_path / "in" / "vfr.mp4", frames[:12], rate=Fraction(24), pts=irregular, audio=None)
    assert main([str(tmp_path / "in"), "--ckpt", str(ckpt), "-o", str(tmp_path / "out"), "--batch-size", "5"]) == 0
    printed = capsys.readouterr().out
    assert "pan.mp4 -> " in printed and "24 frames, audio copied" in printed
    for name in ("pan.mp4", "vfr.mp4"):
        source, result = probe(tmp_path / "in" / name), probe(tmp_path / "out" / name)
        assert (result["width"], result["height"]) == (source["width"], source["height"])
        assert result["frames"] == source["frames"] and result["times"] == pytest.approx(source["times"], abs=1e-3)
        # the duration (the last frame's end) within a frame; the frame rate exactly on a constant-rate clip
        assert abs(result["seconds"] - source["seconds"]) < 1 / 24 and source["seconds"] > 0.5
        assert name == "vfr.mp4" or result["rate"] == source["rate"] == Fraction(30000, 1001)
        assert result["audio"] == source["audio"] and result["audio_packets"] == source["audio_packets"]
        assert result["mark"] == "colorization colorize"
        # the frames' own lightness is kept (only the chroma comes from the network)
        difference = np.mean([np.abs(a - b).mean() for a, b in zip(result["luma"], source["luma"], strict=True)])
        assert difference < 1.5, difference  # Lab L units, after a second H.264 encoding
    assert probe(tmp_path / "out" / "pan.mp4")["audio"] == ("aac", 16000)


def test_odd_size_and_pcm_audio_in_matroska(ckpt, photos, tmp_path, capsys):
    write_clip(tmp_path / "odd.mkv", pan(photos["coffee"], 10, 65, 49), audio="pcm_s16le", fmt="matroska")
    assert main([str(tmp_path / "odd.mkv"), "--ckpt", str(ckpt), "-o", str(tmp_path / "out")]) == 0
    assert "audio re-encoded to AAC (pcm_s16le)" in capsys.readouterr().out
    result, source = probe(tmp_path / "out" / "odd.mp4"), probe(tmp_path / "odd.mkv")
    assert (result["width"], result["height"], result["frames"]) == (65, 49, 10)
    assert result["times"] == pytest.approx(source["times"], abs=1e-3)
    assert result["audio"] == ("aac", 16000)


def test_rotation_start_offset_and_odd_names_are_kept(ckpt, photos, tmp_path):
    frames = pan(photos["astronaut"], 12, 64, 48)
    write_clip(tmp_path / "portrait:take1.mp4", frames, rotation=90)  # a phone's portrait video, a ':' in its name
    write_clip(tmp_path / "broadcast.ts", frames, fmt="mpegts", audio="mp2")  # timestamps start at ~1.4 s
    with av.open(str(tmp_path / "broadcast.ts")) as container:
        assert container.streams.video[0].start_time > 0
    assert main([str(tmp_path / "portrait:take1.mp4"), str(tmp_path / "broadcast.ts"), "--ckpt", str(ckpt),
                 "-o", str(tmp_path / "out")]) == 0  # fmt: skip
    with av.open(str(tmp_path / "out" / "portrait:take1.mp4")) as container:
        assert next(container.decode(video=0)).rotation == 90
    result = probe(tmp_path / "out" / "broadcast.mp4")
    # rebased with its audio (which starts a few ms earlier here), not 1.4 s of nothing first
    assert result["frames"] == 12 and 0 <= result["times"][0] < 0.1
    assert result["seconds"] == pytest.approx(12 / 24, abs=0.1)


def test_bad_videos_are_one_line_each_and_the_run_goes_on(ckpt, photos, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    frames = pan(photos["chelsea"], 16, 64, 48)
    write_clip(folder / "good.mp4", frames)
    write_clip(tmp_path / "whole.mp4", frames, faststart=True)
    whole = (tmp_path / "whole.mp4").read_bytes()
    (folder / "truncated.mp4").write_bytes(whole[: len(whole) * 2 // 3])  # header first, frames cut off
    (folder / "moov_lost.mp4").write_bytes((folder / "good.mp4").read_bytes()[:3000])  # index at the end, cut off
    (folder / "noise.mov").write_bytes(np.random.default_rng(0).bytes(20_000))
    (folder / "empty.webm").write_bytes(b"")
    gif = [Image.fromarray(f) for f in frames[:4]]  # FFmpeg decodes GIF, but only video containers are opened
    gif[0].save(folder / "animation.mp4", format="GIF", save_all=True, append_images=gif[1:])
    Image.fromarray(photos["coffee"]).save(folder / "photo.jpg")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert main([str(folder), "--ckpt", str(ckpt), "-o", str(tmp_path / "out")]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 5, errors
    for name in ("truncated.mp4", "moov_lost.mp4", "noise.mov", "empty.webm", "animation.mp4"):
        assert sum(name in line for line in errors) == 1, (name, errors)
    assert "truncated or damaged" in next(line for line in errors if "truncated.mp4" in line)
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["good.mp4", "photo.png"]  # no output, and no temporary file, for the bad ones
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_outputs_never_overwrite_inputs_and_are_not_taken_as_inputs(ckpt, photos, tmp_path, capsys):
    folder = tmp_path / "films"
    folder.mkdir()
    frames = pan(photos["rocket"], 8, 64, 48)
    write_clip(folder / "clip.mp4", frames)
    digest = hashlib.sha256((folder / "clip.mp4").read_bytes()).hexdigest()
    assert main([str(folder), "--ckpt", str(ckpt), "-o", str(folder)]) == 1
    assert "would overwrite an input" in capsys.readouterr().err
    assert hashlib.sha256((folder / "clip.mp4").read_bytes()).hexdigest() == digest
    # another container in the same folder: its output clip.mp4 goes beside it ...
    (folder / "clip.mp4").rename(folder / "clip.mov")
    assert main([str(folder), "--ckpt", str(ckpt), "-o", str(folder)]) == 0
    assert probe(folder / "clip.mp4")["mark"] == "colorization colorize"
    # ... and a second run neither takes it as an input nor redoes the work
    capsys.readouterr()
    assert main([str(folder), "--ckpt", str(ckpt), "-o", str(folder)]) == 0
    assert "0 done, 1 skipped (output exists), 0 failed, 1 earlier outputs left out" in capsys.readouterr().err


def test_too_large_and_stopped_videos_leave_nothing(ckpt, photos, tmp_path, capsys, monkeypatch):
    write_clip(tmp_path / "clip.mp4", pan(photos["rocket"], 12, 64, 48))
    out = tmp_path / "out"
    assert main([str(tmp_path / "clip.mp4"), "--ckpt", str(ckpt), "-o", str(out), "--max-pixels", "3000"]) == 1
    assert "over the limit of 3,000" in capsys.readouterr().err
    calls = []
    compose = video_module.compose_full_resolution

    def stop_at_the_fifth_frame(*args, **kwargs):
        calls.append(1)
        if len(calls) == 5:
            raise Interrupted(signal.SIGTERM)
        return compose(*args, **kwargs)

    monkeypatch.setattr(video_module, "compose_full_resolution", stop_at_the_fifth_frame)
    assert main([str(tmp_path / "clip.mp4"), "--ckpt", str(ckpt), "-o", str(out)]) == 143
    assert not out.exists() or list(out.iterdir()) == []


def huge_header_clip(path: Path, side: int = 15_000) -> Path:
    """A 250 kB Matroska clip of three 320 x 256 raw frames whose header says each frame is
    ``side`` x ``side`` (the track's PixelWidth and PixelHeight rewritten in place)."""
    container = av.open(str(path), "w", format="matroska")
    stream = container.add_stream("rawvideo", rate=25)
    stream.width, stream.height, stream.pix_fmt = 320, 256, "gray"
    for value in (90, 100, 110):
        frame = av.VideoFrame.from_ndarray(np.full((256, 320), value, np.uint8), format="gray")
        container.mux(stream.encode(frame))
    container.mux(stream.encode())
    container.close()
    data = bytearray(path.read_bytes())
    for element, value in ((0xB0, 320), (0xBA, 256)):  # EBML: id, 2-byte size marker, 2-byte value
        at = data.index(bytes([element, 0x82, *value.to_bytes(2, "big")]))
        data[at + 2 : at + 4] = side.to_bytes(2, "big")
    path.write_bytes(data)
    return path


def test_a_video_declaring_huge_frames_is_refused_before_decoding(ckpt, tmp_path, capsys):
    """A 250 kB file whose header declares 15,000 x 15,000 px frames (225 MP; one decoded RGB
    frame 675 MB, the float working copies several GB): one line naming the file and the
    --max-pixels bound, nothing written, and the peak RSS of the run grows by less than one
    such frame would take (the frame size is checked from the header, before any decoding)."""
    clip = huge_header_clip(tmp_path / "huge.mkv")
    with av.open(str(clip)) as container:
        assert (container.streams.video[0].width, container.streams.video[0].height) == (15_000, 15_000)
    out = tmp_path / "out"
    grew, _, error = peak_rss_growth(lambda: main([str(clip), "--ckpt", str(ckpt), "-o", str(out)]))
    assert error is None
    lines = capsys.readouterr().err.strip().splitlines()
    assert any(str(clip) in line and "over the limit of 200,000,000" in line for line in lines), lines
    assert grew < 256 * 2**20, f"peak RSS grew by {grew / 2**20:.0f} MiB"
    assert not out.exists() or list(out.iterdir()) == []


# ----------------------------------------------------------------------------- the stabiliser


def l_of(rgb: np.ndarray) -> torch.Tensor:
    from colorization.color import normalize_l, rgb_u8_to_lab

    return normalize_l(rgb_u8_to_lab(torch.from_numpy(rgb.transpose(2, 0, 1).copy())[None], lightness_only=True)[0])


def ab_of(rgb: np.ndarray) -> torch.Tensor:
    from colorization.color import AB_SCALE, rgb_u8_to_lab

    return rgb_u8_to_lab(torch.from_numpy(rgb.transpose(2, 0, 1).copy())[None])[0, 1:] / AB_SCALE


def run(method: str, frames: list[np.ndarray], noise: float, seed: int = 0) -> tuple[list[torch.Tensor], int]:
    """Frames through the stabiliser, each frame's "prediction" its true ab plus fresh noise."""
    stabilizer, generator = TemporalStabilizer(method), torch.Generator().manual_seed(seed)
    outputs = []
    for rgb in frames:
        truth = ab_of(rgb)
        outputs.append(stabilizer(l_of(rgb), truth + noise * torch.randn(truth.shape, generator=generator)))
    return outputs, stabilizer.cuts


def test_stabiliser_halves_flicker_on_a_pan_and_tracks_the_motion(photos):
    step = 2  # whole pixels, so frame t-1 shifted by `step` is frame t exactly
    frames = pan(photos["astronaut"], 20, 96, 72, step=step)
    truths = [ab_of(f) for f in frames]

    def flicker(outputs):  # ab change between consecutive frames along the known motion
        return np.mean([(b[:, :, :-step] - a[:, :, step:]).abs().mean() for a, b in zip(outputs, outputs[1:])])

    def error(outputs):
        return np.mean([(o - t).abs().mean() for o, t in zip(outputs[5:], truths[5:], strict=True)])

    results = {method: run(method, frames, noise=0.05) for method in ("none", "ema", "flow")}
    assert all(cuts == 0 for _, cuts in results.values())
    none, flow, ema = (results[m][0] for m in ("none", "flow", "ema"))
    assert flicker(flow) < 0.5 * flicker(none), (flicker(flow), flicker(none))
    # following the motion beats the noise; averaging at fixed pixels smears moving edges
    assert error(flow) < 0.6 * error(none) and error(flow) < error(ema), (error(flow), error(none), error(ema))


def test_a_scene_cut_carries_no_colour_into_the_next_shot(photos):
    frames = pan(photos["coffee"], 8, 96, 72) + pan(photos["chelsea"], 8, 96, 72)
    noise = 0.05
    for method in ("flow", "ema"):
        stabilised, cuts = run(method, frames, noise)
        per_frame, _ = run("none", frames, noise)
        assert cuts == 1
        assert torch.equal(stabilised[8], per_frame[8])  # the first frame of the new shot is its own prediction
        assert not torch.equal(stabilised[7], per_frame[7]) and not torch.equal(stabilised[9], per_frame[9])


def test_unknown_temporal_method_is_refused():
    with pytest.raises(ValueError, match="choose one of flow, ema, none"):
        TemporalStabilizer("median")
    with pytest.raises(SystemExit):
        main(["x.mp4", "--ckpt", "c.ckpt", "-o", "out", "--temporal", "median"])


def test_video_through_an_exported_onnx_model_matches_the_checkpoint(ckpt, photos, tmp_path):
    from colorization.colorize import export_main

    write_clip(tmp_path / "clip.mp4", pan(photos["coffee"], 6, 80, 48), audio=None)  # 5:3: ONNX sees the same shape
    assert export_main(["--ckpt", str(ckpt), "--format", "onnx", "-o", str(tmp_path / "m.onnx")]) == 0
    for name, model in (("onnx", ["--onnx", str(tmp_path / "m.onnx")]), ("ckpt", ["--ckpt", str(ckpt)])):
        assert main([str(tmp_path / "clip.mp4"), *model, "-o", str(tmp_path / name), "--crf", "0"]) == 0
    with av.open(str(tmp_path / "onnx" / "clip.mp4")) as a, av.open(str(tmp_path / "ckpt" / "clip.mp4")) as b:
        pairs = list(zip(a.decode(video=0), b.decode(video=0), strict=True))
    assert len(pairs) == 6
    for x, y in pairs:
        x, y = (f.to_ndarray(format="rgb24").astype(np.int16) for f in (x, y))
        assert x.shape == (48, 80, 3) and np.abs(x - y).mean() < 2.0
