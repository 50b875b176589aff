"""What the ``colorize`` command line accepts, importable without torch: ``colorize --help``
and argument errors answer in a fraction of a second, before the model code is imported."""

from __future__ import annotations

import os

from colorization.limits import DEFAULT_MAX_PIXELS, MAX_SIZE

__all__ = ["DEFAULT_MAX_PIXELS", "EXPORT_SUFFIXES", "FORMATS", "MAX_SIZE", "TEMPORAL_METHODS"]

#: photo output formats -> file suffix
FORMATS = {"png": ".png", "jpg": ".jpg"}
#: colorize-export formats -> file suffix
EXPORT_SUFFIXES = {"onnx": ".onnx", "pt2": ".pt2"}
#: video chroma stabilisation (:mod:`colorization.inference.temporal`)
TEMPORAL_METHODS = ("flow", "ema", "none")


def check_decoding(temperature: float, mix: float) -> None:
    """The decodings of ``bins`` this version reads (config, checkpoint, command line): a
    temperature of 0 (the mode) or in [0.001, 100] (smaller ones overflow float32), a mix in [0, 1]."""
    if not (temperature == 0 or 1e-3 <= temperature <= 100):
        raise ValueError(f"the bins temperature must be 0 (the mode) or in 0.001..100, got {temperature}")
    if not 0.0 <= mix <= 1.0:
        raise ValueError(f"the bins mix must be in 0..1, got {mix}")


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask: a container's or SLURM's share)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def default_threads(cores: int | None = None, load: float | None = None) -> int:
    """Threads for the network when ``--threads`` is not given: the cores other programs are
    not already using (cores minus the whole part of the 1-minute load average, at least 1). Torch's default
    (one thread per core) on a machine whose cores are busy makes every thread wait for the
    others: a 24 MP photo took 4 min 41 s instead of 1 min 04 s with one thread."""
    cores = available_cores() if cores is None else cores
    if load is None:
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):
            load = 0.0
    return max(1, min(cores, cores - int(load)))  # whole cores busy: a run of our own a minute ago counts < 1
