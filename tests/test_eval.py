"""eval.py: scores checkpoints from train.py and every baseline; bad checkpoints are one line."""

import json

import pytest
import torch

from colorization.evaluate import CheckpointError, evaluate, load_checkpoint
from colorization.train import train
from tests.helpers import TINY, TINY_DATA, real_batch, run_script

pytestmark = pytest.mark.filterwarnings("ignore:.*exists and is not empty.*")
FAST = ["callbacks.progress_bar=null", "trainer.accelerator=cpu"]


def test_eval_of_a_checkpoint_matches_the_test_metrics_of_its_run(compose_cfg, tmp_path):
    metrics = train(compose_cfg(*TINY, *FAST, "trainer.max_epochs=2", "compare_gray=false"))
    best = next((tmp_path / "run" / "checkpoints").glob("best-*.ckpt"))
    scored = evaluate(compose_cfg(f"ckpt_path={best}", "split=test", config_name="eval"))
    for name in ("psnr", "ssim", "ab_l1", "delta_e", "ab_auc", "ab_r2", "colorfulness_gap"):
        assert scored[name] == pytest.approx(metrics[f"test/{name}"], rel=1e-4, abs=1e-5), name
    written = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert written["metrics"]["psnr"] == pytest.approx(scored["psnr"])
    assert "| psnr |" in (tmp_path / "run" / "metrics.md").read_text()


@pytest.mark.parametrize("baseline", ["gray", "mean_ab", "pca", "linear", "mlp"])
def test_eval_scores_every_baseline_without_a_checkpoint(compose_cfg, baseline):
    cfg = compose_cfg(f"model={baseline}", "data=sample", *TINY_DATA, "baseline_epochs=1", config_name="eval")
    scored = evaluate(cfg)
    assert {"psnr", "ssim", "delta_e", "ab_auc", "ab_r2", "colorfulness_gap"} <= set(scored)
    if baseline == "gray":
        assert scored["colorfulness"] == pytest.approx(0.0, abs=0.05)


def test_baselines_fitted_on_the_training_photos_beat_gray_on_a_held_out_photo(compose_cfg):
    common = ["data=sample", *TINY_DATA, "data.fractions=[0.8,0.1,0.1]", "split=val", "fid=false"]
    gray = evaluate(compose_cfg("model=gray", *common, config_name="eval"))
    for baseline in ("mean_ab", "linear"):
        fitted = evaluate(compose_cfg(f"model={baseline}", *common, config_name="eval"))
        assert fitted["psnr"] > gray["psnr"], baseline  # (their losses differ: l1, mse)
        assert fitted["delta_e"] < gray["delta_e"] and fitted["ab_l1"] < gray["ab_l1"], baseline
        assert fitted["colorfulness"] > gray["colorfulness"], baseline


def test_missing_and_non_checkpoints_are_one_line_errors(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "nope.ckpt")
    junk = tmp_path / "junk.ckpt"
    junk.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(junk)
    result = run_script("eval.py", f"ckpt_path={junk}", f"hydra.run.dir={tmp_path / 'eval'}")
    assert result.returncode == 2
    output = result.stdout + result.stderr
    assert "junk.ckpt is not a readable checkpoint" in output and "Traceback" not in output


def test_linear_baseline_is_the_least_squares_solution():
    from colorization.models import NeighbourhoodLinear

    batch = real_batch(4, 32)
    net = NeighbourhoodLinear()
    net.fit_batch(batch["L"], batch["ab"])
    net.finish_fit()
    fitted = torch.nn.functional.mse_loss(net(batch["L"]), batch["ab"]).item()
    with torch.no_grad():  # any other linear map of the neighbourhood does worse
        net.conv.weight.add_(torch.randn_like(net.conv.weight) * 1e-2)
    assert torch.nn.functional.mse_loss(net(batch["L"]), batch["ab"]).item() > fitted
