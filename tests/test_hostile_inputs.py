"""Hostile and careless inputs: failed resumes, signals, decompression bombs, existing files,
re-runs into the input folder and bad config values lose nothing and say one clear line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from PIL import Image

from colorization.colorize import export_main, main
from colorization.compose import compose_config
from colorization.data import ImageFolder, LabDataModule
from colorization.data.images import ImageTooLarge, open_rgb
from colorization.io import TEMP_SUFFIX
from colorization.train import train
from tests.helpers import TINY, digest, one_line_exit_2, peak_rss_growth, png_header_only, tiny_checkpoint


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("skip_cae"), "model.net.width=8", "model.net.depth=2")


# ----------------------------------------------------------------------------- resume


def test_resume_from_a_truncated_checkpoint_touches_nothing(ckpt, tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    whole = ckpt.read_bytes()
    (run / "checkpoints" / "last.ckpt").write_bytes(whole[: len(whole) // 2])
    (run / "checkpoints" / "best-epoch000.ckpt").write_bytes(whole)
    (run / "csv").mkdir()
    (run / "csv" / "metrics.csv").write_text("epoch,step,train/loss\n0,2,0.31\n0,5,0.27\n")
    (run / ".hydra").mkdir()
    (run / ".hydra" / "config.yaml").write_text("seed: 42\n")
    (run / "train.log").write_text("[INFO] the first attempt\n")
    before = digest(run)
    line = one_line_exit_2("train.py", *TINY, "ckpt_path=last", f"hydra.run.dir={run}")
    assert "cannot resume" in line and "last.ckpt" in line and "best-epoch000.ckpt" in line and "Start over" in line
    assert digest(run) == before


# ----------------------------------------------------------------------------- signals and temp files


def test_sigterm_while_writing_removes_the_temp_file_and_exits_143(ckpt, photos, tmp_path, monkeypatch, capsys):
    for name in ("coffee", "chelsea"):
        Image.fromarray(photos[name]).save(tmp_path / f"{name}.jpg")
    out = tmp_path / "out"
    save = Image.Image.save

    def save_then_sigterm(image, fp, *args, **kwargs):
        save(image, fp, *args, **kwargs)  # the temporary file is complete on disk, not yet renamed
        if str(fp).endswith(TEMP_SUFFIX) and "chelsea" in str(fp):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)  # the handler runs here, as it would mid-write

    monkeypatch.setattr(Image.Image, "save", save_then_sigterm)
    code = main([str(tmp_path / "chelsea.jpg"), str(tmp_path / "coffee.jpg"), "--ckpt", str(ckpt), "-o", str(out)])
    assert code == 128 + signal.SIGTERM
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("colorize: stopped by SIGTERM"), err
    assert sorted(p.name for p in out.iterdir()) == []  # chelsea came first: nothing finished, nothing left
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is given back


def test_temp_files_of_a_killed_run_are_never_inputs_and_removed_when_safe(ckpt, photos, tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(photos["coffee"]).save(folder / "coffee.jpg")
    stale = folder / f".coffee.png.k2j4d1.{2**22 + 12345}{TEMP_SUFFIX}"  # a pid above any pid_max: gone
    live = folder / f".other.png.x81mz0.{os.getpid()}{TEMP_SUFFIX}"  # a writer that still runs
    for path in (stale, live):
        path.write_bytes(b"\x89PNG half written")
        os.utime(path, (time.time() - 7200, time.time() - 7200))
    # a video being written when its run was killed (SIGKILL: no clean-up) a second ago
    code = (
        "import os, signal, sys\nfrom colorization.io import atomic_path\n"
        "with atomic_path(sys.argv[1]) as tmp:\n    tmp.write_bytes(b'half a video')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    killed = subprocess.run([sys.executable, "-c", code, str(folder / "clip.mp4")], timeout=60)
    assert killed.returncode == -signal.SIGKILL
    (fresh,) = folder.glob(f".clip.mp4.*{TEMP_SUFFIX}")
    elsewhere = folder / f".x.png.k2j4d1.h0badc0de-{2**22 + 1}{TEMP_SUFFIX}"  # another machine's, still writing
    elsewhere.write_bytes(b"")
    assert main([str(folder), "--ckpt", str(ckpt), "-o", str(folder)]) == 0
    assert "1 done, 0 skipped (output exists), 0 failed" in capsys.readouterr().err
    assert not stale.exists() and live.exists()
    assert not fresh.exists() and elsewhere.exists()  # ours: its process is gone; theirs: not an hour old


# ----------------------------------------------------------------------------- pixel limits


def test_pixel_limit_refuses_exactly_above_it(ckpt, tmp_path, capsys):
    Image.fromarray(np.full((120, 120, 3), (150, 90, 40), np.uint8)).save(tmp_path / "p.png")  # 14,400 px
    for limit, accepted in ((14_401, True), (14_400, True), (14_399, False)):
        out = tmp_path / f"out{limit}"
        code = main([str(tmp_path / "p.png"), "--ckpt", str(ckpt), "-o", str(out), "--max-pixels", str(limit)])
        err = capsys.readouterr().err
        assert (code == 0) == accepted and (out / "p.png").exists() == accepted, (limit, err)
        if not accepted:
            assert "14,400 pixels, over the limit of 14,399" in err
        if accepted:
            assert open_rgb(tmp_path / "p.png", max_pixels=limit).size == (120, 120)  # the training decoder
        else:
            with pytest.raises(ImageTooLarge):
                open_rgb(tmp_path / "p.png", max_pixels=limit)


def test_a_300_megapixel_bomb_is_refused_from_its_header(tmp_path):
    png_header_only(tmp_path / "bomb.png", 20_000, 15_000)  # 900 MB decoded, 100 bytes on disk
    grown, seconds, raised = peak_rss_growth(lambda: open_rgb(tmp_path / "bomb.png"))
    assert isinstance(raised, ImageTooLarge) and "300,000,000 pixels, over the limit of 200,000,000" in str(raised)
    assert grown < 16 * 2**20, grown / 2**20  # memory is the bound (time varies with the machine's load)


# ----------------------------------------------------------------------------- export and names


def test_export_never_overwrites_without_asking(ckpt, photos, tmp_path, capsys):
    target = tmp_path / "holiday.jpg"
    Image.fromarray(photos["coffee"]).save(target)
    before = target.read_bytes()
    assert export_main(["--ckpt", str(ckpt), "--format", "pt2", "-o", str(target)]) == 2
    assert "exists; add --overwrite" in capsys.readouterr().err
    assert target.read_bytes() == before
    assert export_main(["--ckpt", str(ckpt), "--format", "pt2", "-o", str(ckpt)]) == 2  # never the ckpt
    assert export_main(["--ckpt", str(ckpt), "--format", "pt2", "-o", str(target), "--overwrite"]) == 0
    with torch.no_grad():  # a torch.export program, whatever the name says
        assert torch.export.load(target).module()(torch.zeros(1, 1, 32, 32)).shape == (1, 2, 32, 32)


def test_a_photo_named_export_colours_like_any_other(ckpt, photos, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Image.fromarray(photos["coffee"]).save(tmp_path / "export", format="PNG")
    assert main(["export", "--ckpt", str(ckpt), "-o", "out"]) == 0
    assert torch.is_grad_enabled()  # main() gives the caller its grad mode back
    assert Image.open(tmp_path / "out" / "export.png").size == Image.open(tmp_path / "export").size
    (tmp_path / "export").unlink()
    assert main(["export", "--ckpt", str(ckpt), "-o", "out2"]) == 1
    assert "colorize-export" in capsys.readouterr().err  # the hint for who meant the old subcommand


def test_a_second_run_into_the_input_folder_does_nothing(ckpt, photos, tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("coffee", "rocket"):
        Image.fromarray(photos[name]).save(folder / f"{name}.jpg")
    for fmt in ("png", "jpg"):
        sub = folder / fmt
        sub.mkdir()
        for name in ("coffee", "rocket"):
            Image.fromarray(photos[name]).save(sub / f"{name}.tif")
        assert main([str(sub), "--ckpt", str(ckpt), "-o", str(sub), "--format", fmt, "--compare"]) == 0
        assert "2 done" in capsys.readouterr().err
        before = {p: p.stat().st_mtime_ns for p in sub.iterdir()}
        assert main([str(sub), "--ckpt", str(ckpt), "-o", str(sub), "--format", fmt, "--compare"]) == 0
        assert "0 done, 2 skipped (output exists), 0 failed, 4 earlier outputs left out" in capsys.readouterr().err
        assert {p: p.stat().st_mtime_ns for p in sub.iterdir()} == before


# ----------------------------------------------------------------------------- config values


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.batch_size=abc", "data.batch_size must be an integer >= 1, got 'abc'"),
        ("data.batch_size=0", "data.batch_size must be an integer >= 1, got 0"),
        ("data.batch_size=-4", "data.batch_size must be an integer >= 1, got -4"),
        ("data.fractions=[0.5,0.2,0.2]", "data.fractions must be fractions that sum to 1"),
        ("data.image_size=-64", "data.image_size must be an integer in 1..16384 (px), got -64"),
        ("data.num_workers=many", "data.num_workers must be 'auto' or an integer"),
        ("trainer.max_epochs=0.5", "trainer.max_epochs must be an integer"),
    ],
)
def test_bad_values_are_one_line_before_any_scan(override, message, tmp_path):
    line = one_line_exit_2("train.py", override, f"hydra.run.dir={tmp_path / 'run'}")
    assert message in line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("usable", [0, 1])
def test_too_few_usable_photos_is_one_line_with_the_counts(usable, photos, tmp_path):
    folder = tmp_path / "few"
    folder.mkdir()
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    if usable:
        Image.fromarray(photos["coffee"]).save(folder / "coffee.jpg")
    for script, args in (("train.py", []), ("eval.py", ["model=gray"])):
        line = one_line_exit_2(script, *args, "data=folder", f"data.root={folder}", f"hydra.run.dir={tmp_path / 'r'}")
        assert f"{usable} photos kept, 1 unreadable skipped" in line and "cannot fill 3 non-empty splits" in line


def test_eval_of_a_checkpoint_whose_config_does_not_match_its_weights(ckpt, tmp_path):
    checkpoint = torch.load(ckpt, weights_only=True)
    checkpoint["colorization_config"]["model"]["net"]["width"] = 16
    torch.save(checkpoint, tmp_path / "mismatch.ckpt")
    line = one_line_exit_2("eval.py", f"ckpt_path={tmp_path / 'mismatch.ckpt'}", f"hydra.run.dir={tmp_path / 'r'}")
    assert "mismatch.ckpt" in line and "config does not match its weights" in line


def test_eval_of_a_digits_checkpoint_on_photos(tmp_path):
    overrides = [
        "model=linear_ae",
        "data=digits",
        "trainer.max_epochs=1",
        "trainer.accelerator=cpu",
        "logger=none",
        "test=false",
    ]
    train(compose_config("train", [*overrides, "callbacks.progress_bar=null"], tmp_path / "digits"))
    GlobalHydra.instance().clear()
    digits = tmp_path / "digits" / "checkpoints" / "last.ckpt"
    line = one_line_exit_2("eval.py", f"ckpt_path={digits}", "data=sample", f"hydra.run.dir={tmp_path / 'r'}")
    assert "is a ReconstructionModule, which takes DigitsDataModule data" in line and "not LabDataModule" in line


def test_a_photo_removed_during_training_warns_once(photo_dir):
    dm = LabDataModule(ImageFolder(photo_dir), image_size=32, batch_size=2, num_workers=0, train_repeats=4,
                       fractions=(1.0, 0.0, 0.0))  # fmt: skip
    dm.setup("fit")
    crops = dm.datasets["train"]
    removed = photo_dir / dm.split_names("train")[0]
    removed.unlink()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):  # three epochs
            assert all(crops[i].shape == (3, 32, 32) for i in range(len(crops)))
    messages = [str(w.message) for w in caught if str(removed) in str(w.message)]
    assert len(messages) == 1 and "1 photo(s) lost so far" in messages[0]


def test_an_input_folder_inside_the_output_folder_is_coloured(ckpt, photos, tmp_path, capsys):
    """-o may contain the input folder (``colorize old_photos/ -o .``): its photos are inputs,
    not earlier outputs; and a bad --device is one line."""
    folder = tmp_path / "old_photos"
    folder.mkdir()
    Image.fromarray(photos["coffee"]).save(folder / "coffee.jpg")
    assert main([str(folder), "--ckpt", str(ckpt), "-o", str(tmp_path)]) == 0
    assert "1 done" in capsys.readouterr().err and (tmp_path / "coffee.png").is_file()
    assert main([str(folder / "*.jpg"), "--ckpt", str(ckpt), "-o", str(tmp_path / "g")]) == 0
    assert main([str(folder), "--ckpt", str(ckpt), "-o", str(tmp_path / "d"), "--device", "gpu"]) == 2
    assert "--device gpu" in capsys.readouterr().err.strip().splitlines()[-1]


# ----------------------------------------------------------------------------- a checkpoint's stored data locations


def _with_stored_data(ckpt: Path, path: Path, data: dict) -> Path:
    state = torch.load(ckpt, weights_only=True)
    state["colorization_config"]["data"] = {**state["colorization_config"]["data"], **data}
    torch.save(state, path)
    return path


def test_a_checkpoint_cannot_choose_where_eval_reads_writes_or_deletes(ckpt, photo_dir, tmp_path, monkeypatch):
    from colorization.checkpoint import CheckpointError
    from colorization.evaluate import evaluate
    from colorization.preflight import run_checks

    monkeypatch.setenv("COLORIZATION_CACHE", str(tmp_path / "my_cache"))  # the user's own scan cache
    chosen = tmp_path / "chosen"
    chosen.mkdir()
    stale = chosen / f".notes.txt.abc123.999999{TEMP_SUFFIX}"  # somebody's file, three hours old
    stale.write_text("keep me")
    os.utime(stale, (time.time() - 3 * 3600,) * 2)
    folder = {"_target_": "colorization.data.ImageFolder", "_partial_": True}
    crafted = _with_stored_data(ckpt, tmp_path / "crafted.ckpt", {"source": folder, "root": str(photo_dir),
                                                                   "scan_cache": str(chosen)})  # fmt: skip
    args = [f"ckpt_path={crafted}", "fid=false", "split=val"]
    cfg = compose_config("eval", args, tmp_path / "e1")
    with pytest.raises(CheckpointError, match=rf"add data_root={photo_dir}.*data=folder_test"):
        run_checks(cfg, "eval", tmp_path / "e1")  # eval.py's preflight: before the run folder exists
    GlobalHydra.instance().clear()
    # given on the command line, the same folder is read; the stored cache folder is never used
    cfg = compose_config("eval", [*args, f"data_root={photo_dir}"], tmp_path / "e2")
    run_checks(cfg, "eval", tmp_path / "e2")
    scored = evaluate(cfg)
    GlobalHydra.instance().clear()
    assert scored["psnr"] > 0
    assert sorted(p.name for p in chosen.iterdir()) == [stale.name] and stale.read_text() == "keep me"
    assert any((tmp_path / "my_cache").rglob("*.json"))  # the scan cache went to the user's own
    # a remote root is never opened, not even asked for: eval says how to give it
    shards = {"_target_": "colorization.data.shards.ShardSource", "_partial_": True, "cache_dir": str(chosen)}
    remote = _with_stored_data(ckpt, tmp_path / "remote.ckpt", {"source": shards, "root": "s3://bucket/pack"})
    cfg = compose_config("eval", [f"ckpt_path={remote}", "fid=false"], tmp_path / "e3")
    with pytest.raises(CheckpointError, match=r"data_root=s3://bucket/pack"):
        run_checks(cfg, "eval", tmp_path / "e3")
    GlobalHydra.instance().clear()
    assert sorted(p.name for p in chosen.iterdir()) == [stale.name]


def test_eval_scores_a_folder_with_data_folder_test_and_prints_gray_beside(ckpt, photo_dir, tmp_path, caplog):
    import json
    import logging

    from colorization.evaluate import evaluate

    cfg = compose_config("eval", [f"ckpt_path={ckpt}", "data=folder_test", f"data.root={photo_dir}",
                                  "data.image_size=32", "fid=false"], tmp_path / "e")  # fmt: skip
    with caplog.at_level(logging.INFO):
        scored = evaluate(cfg)
    GlobalHydra.instance().clear()
    written = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert written["metrics"]["psnr"] == pytest.approx(scored["psnr"])
    assert written["gray"]["colorfulness"] == pytest.approx(0.0, abs=0.05)  # gray: ab = 0, same photos
    assert written["gray"]["psnr"] != pytest.approx(scored["psnr"])
    assert "| psnr |" in caplog.text and "gray (ab = 0)" in caplog.text


# ----------------------------------------------------------------------------- the first hour


def test_colorize_help_answers_without_importing_torch():
    import resource

    code = (
        "import sys\nfrom colorization.colorize import main\n"
        "for argv in (['--help'], ['photo.jpg', '--ckpt', 'x.ckpt']):\n"
        "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
        "print('torch' in sys.modules, 'numpy' in sys.modules)\n"
    )
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert "usage: colorize" in result.stdout and "required: -o/--output" in result.stderr
    assert result.stdout.strip().splitlines()[-1] == "False False"  # nothing heavy imported
    assert cpu < 0.5, f"colorize --help and an argument error took {cpu:.2f} s of CPU"


def test_threads_default_to_the_idle_cores_and_are_restored(ckpt, photos, tmp_path, monkeypatch, capsys):
    from colorization.inference.options import default_threads

    assert default_threads(cores=2, load=1.7) == 1  # the other core is busy: one thread, not two fighting
    assert default_threads(cores=2, load=0.1) == 2 and default_threads(cores=16, load=3.2) == 13
    assert default_threads(cores=4, load=40.0) == 1
    Image.fromarray(photos["coffee"]).save(tmp_path / "coffee.jpg")
    seen, threads = [], torch.get_num_threads()
    monkeypatch.setattr(torch, "set_num_threads", lambda n: seen.append(n))
    assert main([str(tmp_path / "coffee.jpg"), "--ckpt", str(ckpt), "-o", str(tmp_path / "o"), "--threads", "1"]) == 0
    assert seen == [1, threads]  # set for the run, then given back (main() may run inside a program)
    with pytest.raises(SystemExit):
        main([str(tmp_path / "coffee.jpg"), "--ckpt", str(ckpt), "-o", str(tmp_path / "o"), "--threads", "0"])
    assert "--threads must be >= 1" in capsys.readouterr().err


def test_file_names_are_printed_without_their_terminal_escapes(ckpt, photos, tmp_path, capsys):
    Image.fromarray(photos["coffee"]).save(tmp_path / "good\x1b]0;owned\x07.jpg")
    (tmp_path / "bad\x1b[2J\x1b[31m.jpg").write_bytes(b"not a photo")
    assert main([str(tmp_path), "--ckpt", str(ckpt), "-o", str(tmp_path / "out")]) == 1
    out, err = capsys.readouterr()
    assert "\x1b" not in out + err and "\x07" not in out
    assert "good\\x1b]0;owned\\x07.jpg" in out and "bad\\x1b[2J\\x1b[31m.jpg" in err


def test_a_photo_time_is_its_own_not_its_batch(ckpt, photos, tmp_path, monkeypatch, capsys):
    import re

    import colorization.inference.jobs as jobs

    for name in ("a_coffee", "b_chelsea"):
        Image.fromarray(photos[name[2:]]).save(tmp_path / f"{name}.jpg")
    slow_open = jobs.open_rgb

    def open_rgb(path, **kwargs):
        if "chelsea" in str(path):
            time.sleep(0.6)  # a slow disk, for the second photo of the batch only
        return slow_open(path, **kwargs)

    monkeypatch.setattr(jobs, "open_rgb", open_rgb)
    assert main([str(tmp_path), "--ckpt", str(ckpt), "-o", str(tmp_path / "out"), "--batch-size", "2"]) == 0
    seconds = dict(re.findall(r"(\w+)\.jpg -> .*, ([\d.]+) s\)", capsys.readouterr().out))
    assert float(seconds["b_chelsea"]) >= 0.6 > float(seconds["a_coffee"]), seconds


def test_a_split_whose_photos_go_missing_is_one_error_line_not_a_traceback(photo_dir, compose_cfg, caplog):
    import logging

    from colorization.train import run

    remove = ["+callbacks.rm._target_=tests.helpers.RemovePhotosAtStart", "+callbacks.rm.split=val"]
    cfg = compose_cfg("data=folder", f"data.root={photo_dir}", "debug=fdr", "data.image_size=32",
                      "model.net.width=8", "model.net.depth=2", *remove)  # fmt: skip
    with caplog.at_level(logging.ERROR), pytest.raises(SystemExit) as stop:
        run(cfg)
    assert stop.value.code == 2
    (line,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert "no photo of this evaluation split can be decoded any more" in line and "removed during the run" in line


def test_every_run_is_free_of_the_notices_it_cannot_act_on(tmp_path, caplog):
    import logging

    from lightning.pytorch.utilities.rank_zero import rank_zero_info
    from torch.utils._pytree import LeafSpec

    from colorization.loggers import WandbLogger
    from colorization.runtime import quiet_known_noise

    with warnings.catch_warnings(record=True) as seen, caplog.at_level(logging.INFO):
        warnings.simplefilter("always")
        quiet_known_noise()
        LeafSpec()  # what Lightning's own code does at every training step
        rank_zero_info("💡 Tip: For seamless cloud logging ... try installing [litlogger]")
        rank_zero_info("a real message")
        warnings.warn("a real warning", UserWarning, stacklevel=1)
    assert [str(w.message) for w in seen] == ["a real warning"]
    assert "Tip" not in caplog.text and "a real message" in caplog.text
    # W&B warns about Lightning's anonymous=None on every run: not passed any more
    assert "anonymous" not in WandbLogger(project="p", offline=True, save_dir=str(tmp_path))._wandb_init
