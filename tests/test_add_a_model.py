"""The README's "Add a model" steps, followed as a user would: one Python file and one short
YAML outside the project, found through PYTHONPATH and Hydra's search path, through
train.py (debug=fdr and a real epoch), eval.py and colorize."""

from __future__ import annotations

import json
import subprocess
import sys

from PIL import Image

from tests.conftest import ROOT
from tests.helpers import TINY_DATA, run_script

TOY_NET = '''"""A toy colorizer: two convolutions from gray L to ab."""

from torch import nn

from colorization.safe_config import register


@register("net")  # checkpoints of this net may be opened (with COLORIZATION_PLUGINS=toy_colorizer)
class ToyColorizer(nn.Module):
    """Gray L (B, 1, H, W) in [-1, 1] -> ab (B, 2, H, W) in [-1, 1]."""

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, 2, 3, padding=1))

    def forward(self, l_norm):
        return self.body(l_norm).tanh()
'''

TOY_YAML = """# conf/model/toy.yaml: the shared colorizer keys, the task, the net
defaults:
  - /base/colorizer@_here_
  - _self_

_target_: colorization.tasks.ColorizationModule
loss: l1
net:
  _target_: toy_colorizer.ToyColorizer
  width: 8
"""


def test_a_model_of_ones_own_trains_evaluates_and_colours(tmp_path, photos, monkeypatch):
    plugin = tmp_path / "plugin"
    (plugin / "conf" / "model").mkdir(parents=True)
    (plugin / "toy_colorizer.py").write_text(TOY_NET)
    (plugin / "conf" / "model" / "toy.yaml").write_text(TOY_YAML)
    monkeypatch.setenv("PYTHONPATH", str(plugin))
    monkeypatch.setenv("COLORIZATION_PLUGINS", "toy_colorizer")
    common = [f"hydra.searchpath=[file://{plugin / 'conf'}]", "model=toy", *TINY_DATA, "trainer.accelerator=cpu"]

    wiring = run_script("train.py", *common, "debug=fdr", f"hydra.run.dir={tmp_path / 'fdr'}")
    assert wiring.returncode == 0, wiring.stderr[-2000:]
    run = tmp_path / "run"
    trained = run_script("train.py", *common, "trainer.max_epochs=1", "test=false", "compare_gray=false",
                         "callbacks.progress_bar=null", f"hydra.run.dir={run}")  # fmt: skip
    assert trained.returncode == 0, trained.stderr[-2000:]
    ckpt = run / "checkpoints" / "last.ckpt"

    scored = run_script("eval.py", f"ckpt_path={ckpt}", "split=val", "fid=false", f"hydra.run.dir={tmp_path / 'ev'}")
    assert scored.returncode == 0, scored.stderr[-2000:]
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["metrics"]["psnr"] > 0

    Image.fromarray(photos["coffee"]).save(tmp_path / "coffee.jpg")
    colorize = [sys.executable, "-m", "colorization.colorize", str(tmp_path / "coffee.jpg"), "--ckpt", str(ckpt)]
    result = subprocess.run([*colorize, "-o", str(tmp_path / "out")], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    assert Image.open(tmp_path / "out" / "coffee.png").size == Image.open(tmp_path / "coffee.jpg").size

    # not declared trusted: the checkpoint's net is refused, with the way to allow it
    monkeypatch.delenv("COLORIZATION_PLUGINS")
    refused = subprocess.run([*colorize, "-o", str(tmp_path / "out2")], capture_output=True, text=True, cwd=ROOT)
    assert refused.returncode == 2 and "COLORIZATION_PLUGINS=<its module>" in refused.stderr
