"""Train a colorizer: ``python train.py [group=option ...] [key=value ...]``.

    python train.py                                # skip-CAE on the bundled sample photos
    python train.py model=skip_cae optim=rmsprop   # one override, one ablation
    python train.py -m optim=adam,rmsprop          # a sweep, one run directory each
    python train.py data=folder data.root=DIR      # your own photos

Configs live in ``conf/`` (``conf/train.yaml`` lists the groups); the run itself is
``colorization.train``.
"""

import os
from pathlib import Path

import hydra
from omegaconf import DictConfig

os.environ.setdefault("PROJECT_ROOT", str(Path(__file__).resolve().parent))


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from colorization.runtime import quiet_known_noise
    from colorization.train import run

    quiet_known_noise()
    return run(cfg)


if __name__ == "__main__":
    main()
