"""Composing the project's Hydra configs from Python (scripts, notebooks, tests), as the
``train.py`` / ``eval.py`` command lines would."""

from __future__ import annotations

import os
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = PROJECT_ROOT / "conf"


def compose_config(config_name: str, overrides: list[str], output_dir: str | Path) -> DictConfig:
    """The config ``config_name`` (``train`` or ``eval``) with ``overrides``, writing into ``output_dir``."""
    os.environ.setdefault("PROJECT_ROOT", str(PROJECT_ROOT))
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name, overrides=list(overrides), return_hydra_config=True)
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]  # as @hydra.main passes it: hydra's own node stays in HydraConfig
        cfg.paths.output_dir = str(output_dir)
    return cfg
