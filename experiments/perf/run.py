"""Performance table: input pipeline vs the seed-style reference, training-step throughput on
real vs synthetic data (pipeline efficiency), speed switches, inference, 24 MP colorize.

    .venv/bin/python experiments/perf/run.py                    # ../shared/data/landscapes, CPU or GPU
    .venv/bin/python experiments/perf/run.py --quick            # smoke run (about a minute)
    .venv/bin/python experiments/perf/run.py --root DIR --device cuda --batch-size 32

What each number means: ``experiments/perf/harness.py``. Results: ``experiments/perf/README.md``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
LANDSCAPES = ROOT.parent / "shared" / "data" / "landscapes" / "train"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=None, help="photo folder (default: the landscapes, else samples)")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")
    parser.add_argument("--batch-size", type=int, default=32, help="seed 002's batch size (default 32)")
    parser.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: data config's)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one small model, two switches")
    parser.add_argument("--skip-24mp", action="store_true", help="leave out the 24 MP colorize measurement")
    parser.add_argument("--models", default=None, help="e.g. skip_cae:150,fusion:256 (default: both at 150 and 256)")
    parser.add_argument("--steps-only", action="store_true", help="only the training-step rows")
    parser.add_argument("--profile", action="store_true", help="then profile one real-data run (Lightning simple)")
    parser.add_argument("--out", type=Path, default=HERE / "output" / "results.md")
    args = parser.parse_args()

    import torch
    from harness import Budget, run, sample_photo_folder  # this folder is on sys.path

    name = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    root = args.root or (LANDSCAPES if LANDSCAPES.is_dir() else sample_photo_folder(HERE / "output" / "sample_photos"))
    budget = Budget(args.warmup, args.steps, args.repeats)
    compile_budget = Budget(max(args.warmup, 5), args.steps, args.repeats)  # compiling takes the first steps
    models = [(m.split(":")[0], int(m.split(":")[1])) for m in args.models.split(",")] if args.models else None
    table = run(
        root, device, budget, args.batch_size, args.workers, args.quick, compile_budget, models, args.steps_only
    )
    if not (args.skip_24mp or args.steps_only):
        result = subprocess.run(
            [sys.executable, str(ROOT / "experiments" / "colorize_24mp" / "run.py"), "--device", device.type,
             "--work", str(HERE / "output" / "colorize_24mp")],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        lines = [line for line in result.stdout.splitlines() if line.strip() and " -> " not in line]
        table += "\n\n" + "\n".join(lines)  # the table, without colorize's per-photo lines
    if args.profile:
        from harness import profile_step

        workers = [f"data.num_workers={args.workers}"] if args.workers is not None else []
        profile_step("skip_cae", 150, args.batch_size, root, device, budget, workers)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
