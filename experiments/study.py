"""Run a study (a Hydra multirun) and aggregate it into one table and one plot.

    .venv/bin/python experiments/study.py adam_vs_rmsprop              # experiment=study_adam_vs_rmsprop
    .venv/bin/python experiments/study.py l1_vs_mse trainer.max_epochs=50 data=folder data.root=DIR
    .venv/bin/python experiments/study.py alpha_vs_beta experiment=alpha,beta data.root=...

The runs go to ``experiments/<name>/runs/<n>/`` (``--out`` changes the folder; ``runs/`` is
not committed), then ``colorization.aggregate`` writes ``summary.md`` and ``summary.png`` into
``experiments/<name>/`` and prints the table. Any train.py override can follow the name; one with a comma sweeps.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", help="study name: conf/experiment/study_<name>.yaml, or any name with overrides")
    parser.add_argument("overrides", nargs="*", help="train.py overrides")
    parser.add_argument("--out", type=Path, default=None, help="folder for the runs (default experiments/<name>)")
    args = parser.parse_args()
    out = (args.out or HERE / args.name).resolve()
    overrides = list(args.overrides)
    if (ROOT / "conf" / "experiment" / f"study_{args.name}.yaml").is_file():
        overrides.insert(0, f"experiment=study_{args.name}")
    elif not any("," in o for o in overrides):
        raise SystemExit(f"study: no conf/experiment/study_{args.name}.yaml and no swept override (a,b) given")
    command = [sys.executable, str(ROOT / "train.py"), "-m", f"hydra.sweep.dir={out / 'runs'}", *overrides]
    print("running:", " ".join(command), flush=True)
    env = {**os.environ, "PROJECT_ROOT": str(ROOT)}
    result = subprocess.run(command, cwd=ROOT, env=env)
    if result.returncode != 0:
        raise SystemExit(f"study: the multirun failed (exit code {result.returncode})")
    sys.path.insert(0, str(ROOT))
    from colorization.aggregate import aggregate

    table, figure = aggregate(out / "runs", title=f"Study {args.name}", out_dir=out)
    print(table.read_text())
    print(f"written: {table}, {figure}")


if __name__ == "__main__":
    main()
