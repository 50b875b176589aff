"""Score a checkpoint or a baseline: ``python eval.py ckpt_path=PATH [data=...] [split=val]``.

    python eval.py ckpt_path=logs/train/runs/<run>/checkpoints/last.ckpt   # its own data config
    python eval.py ckpt_path=PATH data=folder data.root=DIR               # on other photos
    python eval.py model=gray data=sample                                 # a baseline

Writes ``metrics.json`` and ``metrics.md`` into ``logs/eval/runs/<time>/``.
"""

import os
from pathlib import Path

import hydra
from omegaconf import DictConfig

os.environ.setdefault("PROJECT_ROOT", str(Path(__file__).resolve().parent))


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    from colorization.evaluate import run
    from colorization.runtime import quiet_known_noise

    quiet_known_noise()
    run(cfg)


if __name__ == "__main__":
    main()
