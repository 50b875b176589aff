"""An ONNX file (``colorize --onnx``) is untrusted data with a stated memory bound, checked
before anything of its declared size is allocated: at most ``MAX_ONNX_BYTES`` read, once; no
other file read (external weight data refused); a declared input or stored working size at most
``MAX_SIZE`` px; onnxruntime's allocations capped at ``MAX_ONNX_MEMORY``. Each hostile file is
built here, a few hundred bytes on disk, and must be refused at once, in one line, with the
peak RSS barely moved."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from colorization.inference.model import (
    MAX_ONNX_BYTES,
    MAX_ONNX_MEMORY,
    MAX_SIZE,
    ONNX_MULTIPLE_KEY,
    ONNX_SIZE_KEY,
    ColorizeError,
    OnnxColorizer,
)
from tests.conftest import ROOT
from tests.helpers import peak_rss_growth

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

MiB = 2**20


def onnx_model(
    path: Path,
    height: int | str = "H",
    width: int | str = "W",
    size: str | None = None,
    nodes=(),
    initializers=(),
    multiple: str | None = None,
) -> Path:
    """A colorizer-shaped ONNX model, L (B, 1, height, width) -> ab = (L, L) (+ ``nodes``'
    output ``extra`` when given), with ``size`` stored as its working size (``multiple``: the
    multiple its sides must be)."""
    nodes = [helper.make_node("Concat", ["L", "L"], ["ab" if not nodes else "twice"], axis=1), *nodes]
    if len(nodes) > 1:
        nodes.append(helper.make_node("Add", ["twice", "extra"], ["ab"]))
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("L", TensorProto.FLOAT, ["B", 1, height, width])],
        [helper.make_tensor_value_info("ab", TensorProto.FLOAT, None)], list(initializers),
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    props = {ONNX_SIZE_KEY: size, ONNX_MULTIPLE_KEY: multiple}
    helper.set_model_props(model, {key: value for key, value in props.items() if value is not None})
    path.write_bytes(model.SerializeToString())
    return path


def peak_rss_of_colorize(*args: str) -> tuple[subprocess.CompletedProcess, float, int]:
    """Run ``colorize ARGS`` in a fresh process -> (result, seconds, its peak RSS in bytes),
    measured by a wrapper whose only child it is (``RUSAGE_CHILDREN``); its address space is
    capped at 6 GiB, so a regression fails instead of exhausting the machine."""
    wrapper = (
        "import json, resource, subprocess, sys, time\n"
        "cap = lambda: resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))\n"
        "start = time.perf_counter()\n"
        "run = subprocess.run([sys.executable, '-m', 'colorization.colorize', *sys.argv[1:]], preexec_fn=cap,\n"
        "                     capture_output=True, text=True)\n"
        "seconds = time.perf_counter() - start\n"
        "rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024\n"
        "print(json.dumps([run.returncode, run.stdout, run.stderr, seconds, rss]))\n"
    )
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    out = subprocess.run([sys.executable, "-c", wrapper, *args], cwd=ROOT, env=env, capture_output=True, text=True)
    code, stdout, stderr, seconds, rss = json.loads(out.stdout)
    return subprocess.CompletedProcess(args, code, stdout, stderr), seconds, rss


def test_an_onnx_file_declaring_a_huge_input_is_refused_before_any_tensor(tmp_path):
    """A 300-byte file declaring a 16,500 px square input (past the 11.5 GB the run grew to):
    one line naming the file and the bound, at once, the process's peak RSS that of the
    imports alone (one float32 16,500 px square input is 1 GiB; the old code peaked at
    8.6 GiB under a 14 GiB address-space cap, after 33 s, with a traceback)."""
    photo = tmp_path / "photo.png"
    Image.fromarray(np.full((30, 45, 3), 128, np.uint8)).save(photo)
    huge = onnx_model(tmp_path / "huge.onnx", 16_500, 16_500)
    assert huge.stat().st_size < 1000
    result, seconds, rss = peak_rss_of_colorize(str(photo), "--onnx", str(huge), "-o", str(tmp_path / "out"))
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, lines[-5:]
    assert str(huge) in lines[0] and f"16500 px input; working sizes are 1..{MAX_SIZE} px" in lines[0]
    assert rss < 1024 * MiB, f"peak RSS {rss / MiB:.0f} MiB"  # the imports: 680 MiB; the input alone: 1039 MiB
    assert not (tmp_path / "out").exists()


def test_a_stored_working_size_or_a_declared_shape_out_of_bounds_is_refused(tmp_path):
    cases = {
        "stored": (onnx_model(tmp_path / "stored.onnx", size="16500"), "stored working size '16500' is not in 1.."),
        "junk": (onnx_model(tmp_path / "junk.onnx", size="64; rm"), "stored working size '64; rm' is not in 1.."),
        "zero": (onnx_model(tmp_path / "zero.onnx", 0, 0), "declares a 0 px input"),
        "oblong": (onnx_model(tmp_path / "oblong.onnx", 64, 96), "takes (B, 1, 64, 96)"),
        "multiple": (onnx_model(tmp_path / "multiple.onnx", multiple="4096"), "stored size multiple '4096' is not in"),
    }
    for path, message in cases.values():
        grew, seconds, error = peak_rss_growth(lambda path=path: OnnxColorizer(path))
        assert isinstance(error, ColorizeError) and message in str(error) and str(path) in str(error), error
        assert grew < 32 * MiB, (path, grew)
    model = OnnxColorizer(onnx_model(tmp_path / "ok.onnx", size="48"))
    assert (model.size, model.fixed_size, model.multiple) == (48, None, 1)
    model = OnnxColorizer(onnx_model(tmp_path / "unet.onnx", size="48", multiple="32"))
    assert (model.size, model.fixed_size, model.multiple) == (48, None, 32)


def test_an_onnx_file_over_the_size_bound_is_refused_unread(tmp_path):
    big = tmp_path / "big.onnx"
    with open(big, "wb") as file:  # sparse: no disk, but a file of that size
        file.truncate(MAX_ONNX_BYTES + 1)
    grew, seconds, error = peak_rss_growth(lambda: OnnxColorizer(big))
    assert isinstance(error, ColorizeError) and f"over the {MAX_ONNX_BYTES >> 20} MiB" in str(error), error
    assert grew < 16 * MiB


@contextmanager
def address_space_cap(extra: int):
    """This process may map at most ``extra`` bytes more meanwhile (RLIMIT_AS): code that
    would allocate past it fails, instead of exhausting the machine."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    mapped = int(Path("/proc/self/statm").read_text().split()[0]) * resource.getpagesize()
    resource.setrlimit(resource.RLIMIT_AS, (mapped + extra, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def test_external_weight_data_is_refused_and_never_read(tmp_path, monkeypatch):
    """A model may name other files as its weights (ONNX external data, here ``secret.bin``
    beside it): refused in one line, by the onnx check, and by onnxruntime too without it (it
    gets the file's bytes, not its path, so it has no folder to read from)."""
    (tmp_path / "secret.bin").write_bytes(np.arange(2, dtype=np.float32).tobytes())
    weight = TensorProto(name="W", data_type=TensorProto.FLOAT, dims=[1, 2, 1, 1])
    weight.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "secret.bin"), ("offset", "0"), ("length", "8")):
        weight.external_data.add(key=key, value=value)
    add = helper.make_node("Identity", ["W"], ["extra"])
    path = onnx_model(tmp_path / "ext.onnx", size="32", nodes=[add], initializers=[weight])
    with pytest.raises(ColorizeError, match=r"ext.onnx: its tensor 'W' is stored in another file \(external data\)"):
        OnnxColorizer(path)
    from colorization.inference import model

    monkeypatch.setattr(model, "_external_tensor", lambda data: None)  # as without the onnx package
    with pytest.raises(ColorizeError, match="not a usable ONNX model"):
        OnnxColorizer(path)


def test_onnxruntime_allocations_are_capped(tmp_path):
    """A graph that asks for more than ``MAX_ONNX_MEMORY`` at run time (a constant of
    2 x 60,000 x 60,000 floats, 27 GiB, whatever the input) stops with one line, at once,
    without allocating it."""
    shape = numpy_helper.from_array(np.array([1, 2, 60_000, 60_000], np.int64), "shape")
    fill = helper.make_node("ConstantOfShape", ["shape"], ["extra"], value=helper.make_tensor("v", 1, [1], [0.0]))
    model = OnnxColorizer(onnx_model(tmp_path / "bomb.onnx", size="32", nodes=[fill], initializers=[shape]))
    l_norm = np.zeros((1, 1, 8, 8), np.float32)
    with address_space_cap(4 << 30):
        grew, seconds, error = peak_rss_growth(lambda: model(torch.from_numpy(l_norm)))
    assert isinstance(error, ColorizeError), error
    assert f"asks for 26.8 GiB more, past the {MAX_ONNX_MEMORY >> 30} GiB cap" in str(error)
    assert grew < 64 * MiB


def test_the_working_size_of_an_onnx_model_comes_from_the_file_or_size(tmp_path, capsys):
    """A model for any size runs at its stored working size or ``--size``; one without a stored
    size needs ``--size``; one of one square size runs at that size only (letterboxed)."""
    from colorization.colorize import main

    photo = tmp_path / "photo.png"
    Image.fromarray(np.full((30, 45, 3), 128, np.uint8)).save(photo)
    free, fixed = onnx_model(tmp_path / "free.onnx"), onnx_model(tmp_path / "fixed.onnx", 32, 32)
    run = [str(photo), "-o", str(tmp_path / "out"), "--overwrite", "--onnx"]
    assert main([*run, str(free)]) == 2
    assert f"--onnx {free}: the model does not say its working size; give --size" in capsys.readouterr().err
    assert main([*run, str(free), "--size", "24"]) == 0
    assert main([*run, str(fixed), "--size", "24"]) == 2
    assert "--size 24: the ONNX model takes one size, 32 px" in capsys.readouterr().err
    assert main([*run, str(fixed)]) == 0 and main([*run, str(onnx_model(tmp_path / "s.onnx", size="40"))]) == 0
    with Image.open(tmp_path / "out" / "photo.png") as image:
        assert image.size == (45, 30)


def test_an_onnx_model_giving_nan_is_named_as_such(tmp_path, capsys):
    from colorization.colorize import main

    photo = tmp_path / "photo.png"
    Image.fromarray(np.full((30, 45, 3), 128, np.uint8)).save(photo)
    nan = numpy_helper.from_array(np.array([np.nan], np.float32), "W")
    path = onnx_model(tmp_path / "nan.onnx", size="32", nodes=[helper.make_node("Identity", ["W"], ["extra"])],
                      initializers=[nan])  # fmt: skip
    assert main([str(photo), "--onnx", str(path), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--onnx {path}: the model produces non-finite values (NaN/inf)" in err[0], err
