"""The benchmark's quick mode: every model and baseline in one table, and the figure grid."""

import pytest

from tests.helpers import run_script


@pytest.mark.slow
def test_quick_benchmark_writes_the_table_and_the_figure(tmp_path):
    result = run_script("experiments/benchmark/run.py", "--quick", "--out", str(tmp_path), timeout=3000)
    assert result.returncode == 0, result.stderr[-3000:]
    table = (tmp_path / "results.md").read_text()
    for name in ("skip_cae", "cae", "fusion", "vae", "dae", "gray", "mean_ab", "pca", "linear", "mlp"):
        assert f"| {name} |" in table or f"| baseline: {name} |" in table, name
    assert "fid_effnet_lite0" in table and "nan" not in table
    assert (tmp_path / "grid.png").stat().st_size > 10_000
