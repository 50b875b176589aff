"""LabDataModule: uint8 from the workers, Lab on the device, splits by photo, bad input survived."""

import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from colorization.data import (
    DataSourceError,
    DeviceAugmentation,
    ImageFolder,
    LabDataModule,
    SamplePhotos,
    TorchvisionImages,
)
from colorization.data.scan import split_by_photo
from tests.conftest import SHARED_DATA, needs_shared


def make_dm(source, **kwargs) -> LabDataModule:
    defaults = dict(image_size=48, batch_size=4, num_workers=0, min_colorfulness=5.0)
    dm = LabDataModule(source, **{**defaults, **kwargs})
    dm.setup("fit")
    return dm


def attach(dm: LabDataModule, training: bool) -> None:
    dm.trainer = SimpleNamespace(training=training, global_step=0)


def test_workers_deliver_uint8_and_the_hook_delivers_normalised_lab(photo_dir):
    dm = make_dm(ImageFolder(photo_dir), num_workers=1, fractions=(0.6, 0.2, 0.2))
    raw = next(iter(dm.train_dataloader()))  # through a real worker process
    assert raw.dtype == torch.uint8 and raw.shape[1:] == (3, 48, 48)
    attach(dm, training=False)
    batch = dm.on_after_batch_transfer(raw, 0)
    assert set(batch) == {"L", "ab", "rgb"}
    assert batch["L"].shape == (len(raw), 1, 48, 48) and batch["ab"].shape == (len(raw), 2, 48, 48)
    assert all(v.dtype == torch.float32 and v.is_contiguous() for v in batch.values())
    assert batch["L"].min() >= -1 and batch["L"].max() <= 1 and batch["ab"].abs().max() <= 1
    assert torch.allclose(batch["rgb"], raw.float() / 255)


def test_device_batches_take_lightnings_path_and_count_only_lightnings_batches(photo_dir):
    dm = make_dm(ImageFolder(photo_dir), num_workers=0, fractions=(0.6, 0.2, 0.2))
    attach(dm, training=True)  # a loop outside Lightning's while training (closed-form fitting)
    dm.trainer.world_size, dm.trainer.global_rank = 1, 0
    batches = list(dm.device_batches("train", torch.device("cpu")))
    assert len(batches) == len(dm.train_dataloader()) and set(batches[0]) == {"L", "ab", "rgb"}
    assert dm.train_sampler.consumed == 0  # only batches Lightning hands to the model count
    raw = next(iter(dm.val_dataloader()))
    first = next(dm.device_batches("val", torch.device("cpu")))
    assert all(torch.equal(first[k], v) for k, v in dm.on_after_batch_transfer(raw, 0).items())
    assert dm.train_sampler.consumed == 1  # the hook counted that one


def test_augmentation_runs_in_training_only(photo_dir):
    dm = make_dm(ImageFolder(photo_dir), augment=DeviceAugmentation(hflip=1.0, rotation=0, shear=0), num_workers=1)
    raw = next(iter(dm.val_dataloader()))
    images, theta = next(iter(dm.train_dataloader()))  # from a worker: crops and their matrices
    assert images.dtype == torch.uint8 and theta.shape == (len(images), 2, 3)
    attach(dm, training=False)
    assert torch.equal(dm.on_after_batch_transfer(raw, 0)["rgb"], raw.float() / 255)
    attach(dm, training=True)
    assert torch.equal(dm.on_after_batch_transfer([images, theta], 0)["rgb"], images.float().flip(-1) / 255)


def test_augmentation_is_drawn_by_the_workers_seeded_by_item_and_epoch(photo_dir):
    dm = make_dm(ImageFolder(photo_dir), augment=DeviceAugmentation(), fractions=(1.0, 0.0, 0.0))
    crops = dm.datasets["train"]
    first, again, later = crops[(1, 0)], crops[(1, 0)], crops[(1, 1)]
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])  # a resumed run: the same
    assert not torch.equal(first[1], later[1])  # a new epoch: new angles
    plain = make_dm(ImageFolder(photo_dir), augment=None, fractions=(1.0, 0.0, 0.0)).datasets["train"]
    assert torch.equal(plain[(1, 0)], first[0])  # augmentation does not change the crop


def test_augmentation_rotates_and_shears_without_black_corners_and_is_seeded(photos):
    rgb = torch.from_numpy(photos["coffee"].copy()).permute(2, 0, 1)[None].repeat(4, 1, 1, 1)  # uint8
    augment = DeviceAugmentation(hflip=0.0, rotation=20, shear=0.2)
    torch.manual_seed(0)
    first = augment(rgb)
    torch.manual_seed(0)
    assert torch.equal(first, augment(rgb))
    assert not torch.allclose(first, rgb.float())
    assert first.min() >= 0 and first.max() <= 255
    assert first[:, :, :3, :3].mean() > 0.05 * 255  # reflection padding: no black corners
    assert not DeviceAugmentation(hflip=0, rotation=0, shear=0).enabled


def test_split_is_by_photo_disjoint_and_deterministic_under_a_seed():
    dm = make_dm(SamplePhotos(), seed=7)
    names = {s: set(dm.split_names(s)) for s in ("train", "val", "test")}
    assert names["train"].isdisjoint(names["val"]) and names["train"].isdisjoint(names["test"])
    assert names["val"].isdisjoint(names["test"])
    assert len(set().union(*names.values())) == 9 and [len(names[s]) for s in ("train", "val", "test")] == [7, 1, 1]
    again = make_dm(SamplePhotos(), seed=7)
    assert {s: set(again.split_names(s)) for s in names} == names
    splits = {tuple(split_by_photo(list(range(100)), (0.8, 0.1, 0.1), seed)["val"]) for seed in range(5)}
    assert len(splits) > 1  # the seed matters


def test_split_fractions_are_respected_and_validated():
    split = split_by_photo(list(range(50)), (0.7, 0.2, 0.1), seed=0)
    assert [len(split[s]) for s in ("train", "val", "test")] == [35, 10, 5]
    with pytest.raises(ValueError, match="sum to 1"):
        split_by_photo(list(range(10)), (0.5, 0.2, 0.2), seed=0)
    with pytest.raises(ValueError, match="cannot fill"):
        split_by_photo([0, 1], (0.8, 0.1, 0.1), seed=0)


def test_training_crops_are_random_and_evaluation_crops_fixed():
    dm = make_dm(SamplePhotos(), image_size=64, resize=160, train_repeats=2, eval_repeats=4)
    train, val = dm.datasets["train"], dm.datasets["val"]
    assert len(train) == 14 and len(val) == 4
    assert not torch.equal(train[0], train[0])
    assert torch.equal(val[1], val[1]) and not torch.equal(val[1], val[2])


def test_images_smaller_than_the_crop_are_upscaled(tmp_path, photos):
    (tmp_path / "small").mkdir()
    for name, array in photos.items():
        Image.fromarray(array).resize((20, 13)).save(tmp_path / "small" / f"{name}.png")
    dm = make_dm(ImageFolder(tmp_path / "small"), image_size=64, fractions=(0.6, 0.2, 0.2))
    assert next(iter(dm.train_dataloader())).shape[-2:] == (64, 64)


def write_bad_files(folder) -> int:
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.png").write_text("not an image")
    (folder / "noise.webp").write_bytes(bytes(range(256)) * 8)
    good = folder / "astronaut.jpg"
    data = good.read_bytes() if good.exists() else next(folder.rglob("*.jpg")).read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 3])
    return 4


def test_corrupt_files_are_skipped_and_counted_and_every_epoch_runs(photo_dir, photos):
    n_bad = write_bad_files(photo_dir)
    gray = np.asarray(Image.fromarray(photos["coffee"]).convert("L").convert("RGB"))
    Image.fromarray(gray).save(photo_dir / "gray.png")
    Image.fromarray(photos["rocket"]).convert("RGBA").save(photo_dir / "rgba.png")
    Image.fromarray(photos["chelsea"]).quantize(32).save(photo_dir / "palette.bmp")
    Image.fromarray(photos["astronaut"]).convert("CMYK").save(photo_dir / "cmyk.tiff")
    with pytest.warns(UserWarning) as record:
        dm = make_dm(ImageFolder(photo_dir), fractions=(0.6, 0.2, 0.2))
    messages = " ".join(str(w.message) for w in record)
    assert f"skipped {n_bad} unreadable" in messages and "skipped 1 photo(s)" in messages
    assert set(dm.report.unreadable) == {"empty.jpg", "notes.png", "noise.webp", "truncated.jpg"}
    assert set(dm.report.colorless) == {"gray.png"}
    assert len(dm.report.kept) == len(photos) + 3
    for loader in (dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader()):
        for batch in loader:
            assert batch.dtype == torch.uint8


def test_a_file_that_breaks_after_setup_is_replaced_not_fatal(photo_dir):
    dm = make_dm(ImageFolder(photo_dir), fractions=(0.6, 0.2, 0.2))
    victim = dm.source.paths[dm.splits["train"][0]]
    victim.write_bytes(b"")
    with pytest.warns(UserWarning, match=victim.name):
        batches = list(dm.train_dataloader())
    assert sum(len(b) for b in batches) == len(dm.datasets["train"])


def test_missing_and_empty_folders_are_clear_errors_naming_the_path(tmp_path):
    with pytest.raises(DataSourceError, match="does-not-exist"):
        make_dm(ImageFolder(tmp_path / "does-not-exist"))
    (tmp_path / "empty" / "deeper").mkdir(parents=True)
    (tmp_path / "empty" / "readme.txt").write_text("no photos here")
    with pytest.raises(DataSourceError, match="no images .* found under .*empty"):
        make_dm(ImageFolder(tmp_path / "empty"))


def test_a_folder_of_only_broken_files_is_a_clear_error(tmp_path, photo_dir):
    broken = tmp_path / "broken"
    broken.mkdir()
    shutil.copy(next(photo_dir.glob("*.jpg")), broken / "astronaut.jpg")
    write_bad_files(broken)
    (broken / "astronaut.jpg").unlink()
    with pytest.warns(UserWarning), pytest.raises(DataSourceError, match=r"too few usable photos.*0 photos kept"):
        make_dm(ImageFolder(broken))


def test_torchvision_sets_missing_offline_name_the_root_and_the_download_override(tmp_path):
    source = TorchvisionImages("CIFAR10", tmp_path / "cifar", splits=["train"], download=False)
    with pytest.raises(DataSourceError, match=r"cifar.*data\.source\.download=true"):
        len(source)
    with pytest.raises(ValueError, match="unsupported"):
        TorchvisionImages("ImageNet21k", tmp_path, splits=["train"])


def test_torchvision_style_datasets_feed_the_same_pipeline():
    from torchvision.datasets import FakeData

    source = TorchvisionImages.from_datasets([FakeData(12, (3, 40, 30)), FakeData(8, (3, 20, 20))], "fake")
    dm = make_dm(source, image_size=32, min_colorfulness=0.0)
    assert len(source) == 20 and sum(len(v) for v in dm.splits.values()) == 20
    assert next(iter(dm.train_dataloader())).shape[1:] == (3, 32, 32)


@needs_shared
def test_colourless_photos_of_cifar10_are_detected_and_skipped():
    dm = make_dm(ImageFolder(SHARED_DATA / "cifar10" / "test" / "airplane"), image_size=32)
    assert 0 < len(dm.report.colorless) < 20
    assert len(dm.report.kept) + len(dm.report.colorless) == 200


def two_photo_folders(base, photos, first: int = 3, second: int = 3) -> list:
    """Two folders both called ``train`` (``landscapes/train``, ``flowers/train``) of real
    photos and crops of them, JPEG and PNG, the same file names in both, one in a sub-folder."""
    arrays = list(photos.values())
    crops = [a[: a.shape[0] * 2 // 3, : a.shape[1] * 2 // 3] for a in arrays] + [a[a.shape[0] // 3 :] for a in arrays]
    folders = [base / "landscapes" / "train", base / "flowers" / "train"]
    for folder, count, offset in zip(folders, (first, second), (0, first), strict=True):
        (folder / "sub").mkdir(parents=True)
        for i in range(count):
            where = folder / "sub" if i == 0 else folder
            Image.fromarray(crops[offset + i]).save(where / f"photo{i}.{'png' if i % 2 else 'jpg'}")
    return folders


def test_several_folders_are_one_set_split_by_photo_across_all(tmp_path, photos):
    from omegaconf import OmegaConf

    landscapes, flowers = two_photo_folders(tmp_path, photos, 4, 3)
    again = landscapes / "sub" / ".."  # the same folder, listed twice: counted once
    source = ImageFolder([landscapes, str(flowers), again])
    assert source.root == [landscapes, flowers, again]  # as given, for messages
    alone = [ImageFolder(landscapes), ImageFolder(flowers)]
    assert len(source) == len(alone[0]) + len(alone[1]) == 7
    names = [source.name(i) for i in range(len(source))]
    assert len(set(names)) == 7
    assert names == [f"landscapes/train/{alone[0].name(i)}" for i in range(4)] + [
        f"flowers/train/{alone[1].name(i)}" for i in range(3)
    ]  # each folder sorted as alone, the folders in the order given
    assert ImageFolder([landscapes]).name(0) == alone[0].name(0) == "photo1.png"  # one folder: names as before
    assert ImageFolder([landscapes]).root == landscapes

    dm = make_dm(source, fractions=(0.6, 0.2, 0.2), min_colorfulness=0.0)
    train, val, test = (set(dm.splits[s]) for s in ("train", "val", "test"))
    assert not (train & val or train & test or val & test)
    assert train | val | test == set(dm.report.kept) == set(range(7))
    listed = OmegaConf.create({"root": [str(landscapes), str(flowers)]}).root  # as Hydra passes data.root
    rebuilt = make_dm(ImageFolder(listed), fractions=(0.6, 0.2, 0.2), min_colorfulness=0.0)
    assert rebuilt.splits == dm.splits
    assert all(rebuilt.split_names(s) == dm.split_names(s) for s in ("train", "val", "test"))


def test_folders_that_share_a_name_or_nest_keep_photo_names_unique(tmp_path, photos):
    landscapes, flowers = two_photo_folders(tmp_path, photos, 2, 2)
    (tmp_path / "cats").mkdir()
    Image.fromarray(photos["chelsea"]).save(tmp_path / "cats" / "photo1.png")
    source = ImageFolder([tmp_path / "cats", landscapes, flowers])
    assert [source.name(i) for i in range(len(source))] == [
        "cats/photo1.png", "landscapes/train/photo1.png", "landscapes/train/sub/photo0.jpg",
        "flowers/train/photo1.png", "flowers/train/sub/photo0.jpg",
    ]  # fmt: skip
    nested = ImageFolder([landscapes / "sub", landscapes])  # sub's photo is in both: listed once
    assert len(nested) == 2 and nested.paths[0].name == "photo0.jpg"
    assert len({nested.name(i) for i in range(2)}) == 2


def test_a_missing_or_empty_folder_in_a_list_is_one_error_naming_it(tmp_path, photos):
    landscapes, _ = two_photo_folders(tmp_path, photos, 3, 1)
    missing = tmp_path / "no-such-folder"
    source = ImageFolder([landscapes, missing])  # lazy: nothing is read yet
    with pytest.raises(DataSourceError, match=r"does not exist: \S*no-such-folder \(every folder in data\.root"):
        len(source)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataSourceError, match="no images .* found under .*empty") as error:
        make_dm(ImageFolder([landscapes, tmp_path / "empty"]))
    assert "landscapes" not in str(error.value)
    few = two_photo_folders(tmp_path / "few", photos, 1, 1)  # too few between them: both named
    with pytest.raises(DataSourceError, match=r"too few usable photos under \S*landscapes/train, \S*flowers/train: 2"):
        make_dm(ImageFolder(few), min_colorfulness=0.0)


def test_preflight_takes_a_list_of_folders_and_refuses_other_roots(tmp_path, photos, compose_cfg):
    from colorization.preflight import ConfigError, check_values

    landscapes, flowers = two_photo_folders(tmp_path, photos, 2, 1)

    def check(root: str) -> None:
        check_values(compose_cfg("data=folder", f"data.root={root}"))

    with pytest.raises(ConfigError, match="data.root: too few usable photos in .*landscapes.*2 photos kept"):
        check(str(landscapes))  # 2 photos cannot fill 3 splits...
    check(f"[{landscapes},{flowers}]")  # ...but 2 + 1 can: counted over all the folders
    with pytest.raises(ConfigError, match=r"^data\.root: image folder does not exist: \S*/gone\b"):
        check(f"[{landscapes},{tmp_path / 'gone'}]")
    for bad, shown in (("[]", r"\[\]"), ("5", "5"), ("{a: 1}", r"\{'a': 1\}")):
        with pytest.raises(ConfigError, match=rf"^data\.root must be a folder path or a non-empty list .*got {shown}"):
            check(bad)


def test_a_list_root_on_the_command_line_composes_and_sets_up(tmp_path, photos, compose_cfg):
    from hydra.utils import instantiate

    landscapes, flowers = two_photo_folders(tmp_path, photos, 3, 2)
    dm = instantiate(compose_cfg("data=folder", f"data.root=[{landscapes},{flowers}]", "data.num_workers=0").data)
    dm.setup("fit")
    assert dm.source.root == [landscapes, flowers] and len(dm.source) == 5
    names = {n for s in ("train", "val", "test") for n in dm.split_names(s)}
    assert len(names) == len(dm.report.kept) and {n.split("/")[0] for n in names} <= {"landscapes", "flowers"}


def test_a_checkpoint_trained_on_several_folders_loads_and_rebuilds_its_data(tmp_path, photos):
    from colorization.checkpoint import datamodule_from_checkpoint, load_checkpoint
    from tests.helpers import tiny_checkpoint

    landscapes, flowers = two_photo_folders(tmp_path, photos, 3, 3)
    roots = f"data.root=[{landscapes},{flowers}]"
    ckpt = tiny_checkpoint(tmp_path / "run", "data=folder", roots, "model.net.width=8", "model.net.depth=2")
    checkpoint = load_checkpoint(ckpt)
    assert checkpoint["colorization_config"]["data"]["root"] == [str(landscapes), str(flowers)]
    dm = datamodule_from_checkpoint(checkpoint, [str(landscapes), str(flowers)])  # eval.py's data_root=[A,B]
    dm.setup("fit")
    assert dm.source.root == [landscapes, flowers] and len(dm.source) == 6
    assert sum(len(v) for v in dm.splits.values()) == len(dm.report.kept) > 0
