"""Streaming shards: ``python -m colorization.data.pack`` and ``data=shards``.

A small folder of real photos (with a broken and a colourless file among them) is packed and
read back; the split matches data=folder's; DDP ranks stream disjoint shares of the training
split; a killed run resumes to the weights of an uninterrupted one; an interrupted pack, a
half-written or tampered pack is one clear error naming the file.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from colorization.data import ImageFolder, LabDataModule
from colorization.data.images import DataSourceError
from colorization.data.pack import main as pack_main
from colorization.data.pack import pack
from colorization.data.shards import ShardSource
from tests.conftest import real_photos
from tests.helpers import TINY, one_line_exit_2, run_script

PACK = dict(size=64, chunk_bytes="24KB", workers=2, scan_cache=None, verbose=False)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """24 real photo crops (JPEG and PNG, two sub-folders), one broken file, one gray photo."""
    root = tmp_path_factory.mktemp("shards") / "photos"
    for sub in ("a", "b"):
        (root / sub).mkdir(parents=True)
    k = 0
    for array in real_photos().values():
        image = Image.fromarray(array)
        for j in range(5):
            if k == 24:
                break
            crop = image.crop((j * 6, j * 4, j * 6 + 90, j * 4 + 72))
            crop.save(root / ("a" if k % 2 else "b") / f"p{k:02d}.{'png' if k % 3 == 0 else 'jpg'}")
            k += 1
    (root / "a" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    Image.fromarray(np.full((40, 50, 3), 120, np.uint8)).save(root / "b" / "gray.png")
    return root


@pytest.fixture(scope="module")
def packed(folder, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("packed") / "pack"
    pack([folder], out, **PACK)
    return out


def dm_on(source, **kwargs) -> LabDataModule:
    kwargs = {"image_size": 32, "batch_size": 4, "num_workers": 0, "min_colorfulness": 5.0, **kwargs}
    return LabDataModule(source, **kwargs)


def test_pack_keeps_readable_coloured_photos_and_splits_them_as_data_folder_does(folder, packed):
    manifest = json.loads((packed / "manifest.json").read_text())
    assert manifest["counts"] == {"train": 20, "val": 2, "test": 2}
    assert manifest["skipped"]["unreadable"] == 1 and manifest["skipped"]["colorless"] == 1
    assert set(manifest["skipped"]["examples"]) == {"a/broken.jpg", "b/gray.png"}
    assert manifest["photos_per_second"] > 0 and manifest["bytes"] > 0
    shards, folders = dm_on(ShardSource(packed)), dm_on(ImageFolder(folder))
    shards.setup("fit"), folders.setup("fit")
    for split in ("train", "val", "test"):  # the same photos in each split: data=folder's rule
        assert sorted(shards.split_names(split)) == folders.split_names(split)
    names = [n for s in ("train", "val", "test") for n in shards.split_names(s)]
    assert len(names) == len(set(names)) == 24  # disjoint, every kept photo once
    source = ShardSource(packed)
    for i in (0, 7, 23):  # shorter side = --size; the pixels are the photo's
        image = source.load(i)
        assert min(image.size) == 64 and image.mode == "RGB"
        original = Image.open(folder / source.name(i)).convert("RGB").resize(image.size, Image.Resampling.BILINEAR)
        assert np.abs(np.asarray(image, float) - np.asarray(original, float)).mean() < 4


def test_packing_again_needs_overwrite_gives_the_same_split_and_leaves_other_folders_alone(folder, packed, tmp_path):
    with pytest.raises(DataSourceError, match="already a pack; pass --overwrite"):
        pack([folder], packed, **PACK)
    again = tmp_path / "again"
    assert pack_main([str(folder), str(again), "--size", "64", "--chunk-bytes", "24KB", "--scan-cache", "none"]) == 0
    split = ShardSource(again).packed_splits()
    assert [ShardSource(again).name(i) for i in split["val"]] == [ShardSource(packed).name(i) for i in split["val"]]
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("keep me")
    with pytest.raises(DataSourceError, match="exists and is not a pack: it is left alone"):
        pack([folder], precious, **PACK)
    assert (precious / "thesis.tex").read_text() == "keep me"


def test_an_interrupted_pack_is_never_read_and_the_same_command_restarts_it(folder, tmp_path, monkeypatch):
    import litdata

    real, calls = litdata.optimize, []

    def dies_on_the_second_split(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    out = tmp_path / "pack"
    monkeypatch.setattr(litdata, "optimize", dies_on_the_second_split)
    with pytest.raises(KeyboardInterrupt):
        pack([folder], out, **PACK)
    assert not out.exists() and (tmp_path / "pack.partial" / "train" / "index.json").is_file()
    with pytest.raises(DataSourceError, match="pack.partial is an interrupted pack"):
        ShardSource(out).check()
    monkeypatch.setattr(litdata, "optimize", real)
    pack([folder], out, **PACK)
    assert not (tmp_path / "pack.partial").exists() and len(ShardSource(out)) == 24


def _copy(packed: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(packed, tmp_path / "copy"))


@pytest.mark.parametrize("damage", ["truncated chunk", "missing chunk", "missing index", "pickle format",
                                    "path in chunk name", "garbage manifest", "no manifest", "data_spec imports",
                                    "updated_at path", "another reader", "symlinked chunk", "symlinked index",
                                    "symlinked split", "oversized index"])  # fmt: skip
@pytest.mark.parametrize("scheme", ["", "local:"])  # a folder, and the same folder streamed as a URL
def test_half_written_or_tampered_packs_are_one_clear_error_naming_the_file(scheme, damage, packed, tmp_path):
    root = _copy(packed, tmp_path)
    index_path = root / "train" / "index.json"
    index = json.loads(index_path.read_text())
    chunk = root / "train" / index["chunks"][0]["filename"]
    if damage == "truncated chunk":
        chunk.write_bytes(chunk.read_bytes()[:100])
        named = chunk.name
    elif damage == "missing chunk":
        chunk.unlink()
        named = chunk.name
    elif damage == "missing index":
        index_path.unlink()
        named = "index.json"
    elif damage == "symlinked chunk":
        outside = tmp_path / "outside.bin"
        chunk.rename(outside)
        chunk.symlink_to(outside)
        named = "not a regular file"
    elif damage == "symlinked index":  # a link is refused even to a whole index
        outside = tmp_path / "outside.json"
        index_path.rename(outside)
        index_path.symlink_to(outside)
        named = "index.json: not a regular file"
    elif damage == "symlinked split":
        (root / "train").rename(tmp_path / "outside")
        (root / "train").symlink_to(tmp_path / "outside")
        named = "train: a link"
    elif damage == "oversized index":  # checked before it is read: JSON parses to ~25 times its size
        index_path.write_text(json.dumps(index) + " " * 16 * 2**20)
        named = "bytes, over 16,777,216"
    elif damage in ("pickle format", "path in chunk name", "data_spec imports", "updated_at path", "another reader"):
        if damage == "pickle format":
            index["config"]["data_format"] = ["str", "pickle"]
        elif damage == "path in chunk name":
            index["chunks"][0]["filename"] = "../../outside.bin"
        elif damage == "data_spec imports":  # LitData would import and call this module's attribute
            spec = json.loads(index["config"]["data_spec"])
            spec[1]["type"] = "collections.defaultdict"
            spec[1]["context"] = json.dumps({"default_factory_module": "os", "default_factory_name": "getcwd",
                                             "dict_context": ["name", "jpeg"]})  # fmt: skip
            index["config"]["data_spec"] = json.dumps(spec)
        elif damage == "updated_at path":  # LitData makes it a folder of its cache
            index["updated_at"] = "../../../escaped"
        else:
            index["config"]["format"] = "mds"
        index_path.write_text(json.dumps(index))
        named = "refusing to read it"
    elif damage == "garbage manifest":
        (root / "manifest.json").write_bytes(b"\x00\x01{{")
        named = "manifest.json: not valid JSON"
    else:
        (root / "manifest.json").unlink()
        named = "has no manifest.json, so it is not a complete pack"
    cache = tmp_path / "cache"
    with pytest.raises(DataSourceError, match=None) as error:
        len(ShardSource(f"{scheme}{root}", cache_dir=str(cache)))
    assert named in str(error.value) and f"{scheme}{root}" in str(error.value)
    assert not cache.exists()  # refused before anything is copied into the chunk cache


def test_train_py_on_a_damaged_pack_is_one_line_naming_it(packed, tmp_path):
    root = _copy(packed, tmp_path)
    (root / "val" / "index.json").unlink()
    line = one_line_exit_2("train.py", "data=shards", f"data.root={root}", f"hydra.run.dir={tmp_path / 'run'}")
    assert str(root / "val" / "index.json") in line and "incomplete" in line


def ranks_items(packed: Path, world: int, epoch: int = 0, **kwargs) -> list[list[int]]:
    shares = []
    for rank in range(world):
        dm = dm_on(ShardSource(packed), **kwargs)
        dm.trainer = SimpleNamespace(world_size=world, global_rank=rank, training=False)
        dm.setup("fit")
        loader = dm.train_dataloader()
        loader.sampler.set_epoch(epoch)
        shares.append([dm.datasets["train"].indices[item % 20] for item, _ in loader.sampler])
    return shares


def test_ddp_ranks_stream_disjoint_shares_whose_union_is_the_training_split(packed):
    for epoch in (0, 1):
        first, second = ranks_items(packed, world=2, epoch=epoch)
        assert len(first) == len(second) == 10 and not set(first) & set(second)
        assert sorted(first + second) == ShardSource(packed).packed_splits()["train"]
    assert ranks_items(packed, 2, epoch=0) != ranks_items(packed, 2, epoch=1)  # a new order each epoch


def test_training_order_reads_one_window_of_chunks_at_a_time(packed):
    bounds = [b for b in ShardSource(packed).chunk_bounds() if b[1] <= 20]  # the training chunks
    assert len(bounds) >= 3
    chunk_of = {i: k for k, (a, b) in enumerate(bounds) for i in range(a, b)}
    (order,) = ranks_items(packed, world=1, shuffle_window=1)
    switches = sum(chunk_of[a] != chunk_of[b] for a, b in zip(order, order[1:], strict=False))
    assert switches == len(bounds) - 1  # each chunk read once, start to end
    (wide,) = ranks_items(packed, world=1, shuffle_window=100)  # one window: a full shuffle
    assert sorted(wide) == sorted(order) and wide != order


def test_ddp_sim_ranks_stream_disjoint_photos_whose_union_is_the_training_split(packed, tmp_path):
    run_dir, shares = tmp_path / "ddp", tmp_path / "shares"
    result = run_script("train.py", *TINY, "data=shards", f"data.root={packed}", "trainer=ddp_sim",
                        "trainer.accelerator=cpu", "trainer.max_epochs=2", "test=false", "compare_gray=false",
                        "callbacks.progress_bar=null", "logger=csv", f"hydra.run.dir={run_dir}",
                        "+callbacks.share._target_=tests.helpers.RecordShare", f"+callbacks.share.folder={shares}",
                        "data.train_repeats=1", timeout=600)  # fmt: skip
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    # 20 training photos, 10 per rank, batches of 4 (the last part-batch dropped): 2 steps per epoch
    assert json.loads((run_dir / "metrics.json").read_text())["global_step"] == 4
    train = ShardSource(packed).packed_splits()["train"]
    orders = []
    for epoch in (0, 1):  # as read in the two ranks' own processes
        first, second = (json.loads((shares / f"rank{r}_epoch{epoch}.json").read_text()) for r in (0, 1))
        assert len(first) == len(second) == 10 and not set(first) & set(second)
        assert sorted(first + second) == train
        orders.append(first)
    assert orders[0] != orders[1]  # a new order each epoch


def test_killed_mid_epoch_on_shards_resumes_to_the_weights_of_an_uninterrupted_run(packed, tmp_path):
    run = [*TINY, "data=shards", f"data.root={packed}", "trainer.max_epochs=2", "trainer.accelerator=cpu",
           "test=false", "compare_gray=false", "callbacks.progress_bar=null",
           "callbacks.last_checkpoint.every_n_train_steps=4"]  # fmt: skip
    whole = run_script("train.py", *run, f"hydra.run.dir={tmp_path / 'whole'}")
    assert whole.returncode == 0, whole.stderr[-2000:]
    killer = ["+callbacks.killer._target_=tests.helpers.KillAtStep", "+callbacks.killer.step=14"]
    killed = run_script("train.py", *run, *killer, f"hydra.run.dir={tmp_path / 'killed'}")
    assert killed.returncode == -signal.SIGKILL  # 10 steps per epoch: killed mid-epoch 2, saved at 12
    resumed = run_script("train.py", *run, "ckpt_path=last", f"hydra.run.dir={tmp_path / 'killed'}")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a, b = (torch.load(tmp_path / r / "checkpoints" / "last.ckpt", weights_only=True) for r in ("whole", "killed"))
    assert a["global_step"] == b["global_step"] == 20
    assert (
        max((a["state_dict"][k].float() - b["state_dict"][k].float()).abs().max().item() for k in a["state_dict"])
        < 1e-5
    )


def test_a_remote_root_streams_chunks_into_the_cache_and_reads_the_same_photos(packed, tmp_path):
    # local:/path is LitData's stand-in for a remote URL: manifest and chunks are fetched
    remote = ShardSource(f"local:{packed}", cache_dir=str(tmp_path / "cache"))
    local = ShardSource(packed)
    assert len(remote) == len(local) and remote.packed_splits() == local.packed_splits()
    for i in (0, 21, 23):  # train, then test
        assert remote.name(i) == local.name(i)
        assert np.array_equal(np.asarray(remote.load(i)), np.asarray(local.load(i)))
    assert list((tmp_path / "cache").rglob("chunk-*.bin"))  # streamed, not read in place
    with pytest.raises(DataSourceError, match="'local:' only once"):  # LitData would read {packed}/x
        len(ShardSource(f"local:{packed}/local:x"))


def test_pack_never_deletes_what_it_did_not_write(folder, tmp_path):
    out = tmp_path / "pack"
    mine = tmp_path / "pack.partial"  # the user's own folder, named like a work folder
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(DataSourceError, match="not an unfinished pack .* left alone"):
        pack([folder], out, **PACK)
    assert (mine / "notes.txt").read_text() == "keep me" and not out.exists()
    mine.rename(tmp_path / "elsewhere")
    (tmp_path / "pack.old").mkdir()  # a user's folder beside the pack survives --overwrite
    (tmp_path / "pack.old" / "a.txt").write_text("keep me too")
    pack([folder], out, **PACK)
    with pytest.raises(DataSourceError, match="is \\(inside\\) the output"):  # it would delete its source
        pack([out / "train"], out, **{**PACK, "overwrite": True})
    pack([folder], out, **{**PACK, "overwrite": True})
    assert (tmp_path / "pack.old" / "a.txt").read_text() == "keep me too"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere", "pack", "pack.old"]
    copied = tmp_path / "not_only_a_pack"  # a pack's files plus the user's: not replaced
    import shutil

    shutil.copytree(out, copied)
    (copied / "thesis.tex").write_text("keep")
    with pytest.raises(DataSourceError, match="not a pack: it is left alone"):
        pack([folder], copied, **{**PACK, "overwrite": True})


def test_a_pack_killed_between_finishing_and_renaming_is_finished_by_the_same_command(folder, tmp_path, monkeypatch):
    import litdata

    import colorization.data.pack as packing

    out, real_swap = tmp_path / "pack", packing._swap_in
    monkeypatch.setattr(packing, "_swap_in", lambda work, out: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        pack([folder], out, **PACK)
    assert not out.exists() and (tmp_path / "pack.partial" / "manifest.json").is_file()
    monkeypatch.setattr(packing, "_swap_in", real_swap)
    monkeypatch.setattr(litdata, "optimize", lambda *a, **k: pytest.fail("packed again"))
    manifest = pack([folder], out, **PACK)
    assert manifest["counts"] == {"train": 20, "val": 2, "test": 2} and len(ShardSource(out)) == 24
    assert not (tmp_path / "pack.partial").exists() and not (out / ".colorization-pack").exists()


def test_a_damaged_photo_in_a_chunk_is_unreadable_by_name_and_a_replaced_pack_is_an_error(packed, tmp_path):
    import shutil

    from colorization.data.images import UnreadableImage

    root = Path(shutil.copytree(packed, tmp_path / "copy"))
    source = ShardSource(root)
    index = json.loads((root / "train" / "index.json").read_text())
    chunk = root / "train" / index["chunks"][0]["filename"]
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2 :] = bytes(len(data) - len(data) // 2)  # zeros: the size stays, the photos break
    chunk.write_bytes(bytes(data))
    size = index["chunks"][0]["chunk_size"]
    with pytest.raises(UnreadableImage, match=str(root / "train")):
        source.load(size - 1)
    assert source.load(size).size  # the next chunk still reads
    # replaced mid-run (pack --overwrite with another split): a reader opened after that refuses
    pack([source_folder_of(packed)], root, **{**PACK, "overwrite": True, "fractions": (0.5, 0.25, 0.25)})
    with pytest.raises(DataSourceError, match="the pack changed since this run checked it"):
        source.load(20)  # the first validation photo: its reader opens now


def source_folder_of(packed: Path) -> Path:
    return Path(json.loads((packed / "manifest.json").read_text())["sources"][0])


def test_a_second_pack_into_the_same_out_waits_for_the_first(folder, tmp_path):
    import os

    work = tmp_path / "pack.partial"  # claimed by a running pack (here: this test's parent process)
    work.mkdir()
    (work / ".colorization-pack").write_text(f"{os.getppid()}\n")
    with pytest.raises(DataSourceError, match="being written by another pack"):
        pack([folder], tmp_path / "pack", **PACK)
    assert work.is_dir() and not (tmp_path / "pack").exists()  # its work is left alone
    (work / ".colorization-pack").write_text("999999999\n")  # its writer is gone: an interrupted pack
    pack([folder], tmp_path / "pack", **PACK)
    assert not work.exists() and len(ShardSource(tmp_path / "pack")) == 24
