"""Set-up checks on a photo source, and the deterministic split by photo."""

from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch

from colorization.color import colorfulness
from colorization.data.images import UnreadableImage
from colorization.data.sources import ImageSource

#: shorter side of the thumbnail on which colourfulness is measured
SCAN_SIZE = 64


@dataclass
class ScanReport:
    """What the set-up scan kept and skipped (names of skipped photos included)."""

    kept: list[int] = field(default_factory=list)
    unreadable: dict[str, str] = field(default_factory=dict)  # name -> reason
    colorless: dict[str, float] = field(default_factory=dict)  # name -> colourfulness

    def summary(self) -> str:
        return (
            f"{len(self.kept)} photos kept, {len(self.unreadable)} unreadable skipped, "
            f"{len(self.colorless)} with (almost) no colour skipped"
        )


def _check(source: ImageSource, index: int, min_colorfulness: float) -> tuple[str, object]:
    try:
        image = source.load(index, draft_size=SCAN_SIZE)
        if min_colorfulness <= 0:
            return "ok", None
        image = image.copy()
        image.thumbnail((4 * SCAN_SIZE, 4 * SCAN_SIZE))
        score = colorfulness(np.asarray(image))
        return ("ok", score) if score >= min_colorfulness else ("colorless", score)
    except UnreadableImage as error:
        return "unreadable", str(error)


def scan_source(
    source: ImageSource, min_colorfulness: float = 0.0, workers: int = 4, quiet: bool = False
) -> ScanReport:
    """Decode every photo once (files only) and measure its colourfulness.

    Unreadable files and photos whose Hasler-Suesstrunk colourfulness is below
    ``min_colorfulness`` are skipped; one warning per kind counts them (none if ``quiet``).
    """
    report = ScanReport()
    if not source.reads_files and min_colorfulness <= 0:
        report.kept = list(range(len(source)))
        return report
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = pool.map(lambda i: _check(source, i, min_colorfulness), range(len(source)))
        for index, (status, value) in enumerate(results):
            if status == "ok":
                report.kept.append(index)
            elif status == "unreadable":
                report.unreadable[source.name(index)] = value
            else:
                report.colorless[source.name(index)] = value
    if quiet:
        return report
    if report.unreadable:
        examples = "; ".join(list(report.unreadable.values())[:3])
        warnings.warn(
            f"skipped {len(report.unreadable)} unreadable image file(s) of {len(source)}, e.g. {examples}",
            stacklevel=2,
        )
    if report.colorless:
        examples = ", ".join(list(report.colorless)[:5])
        warnings.warn(
            f"skipped {len(report.colorless)} photo(s) of {len(source)} with colourfulness below "
            f"{min_colorfulness} (gray or nearly so), e.g. {examples}",
            stacklevel=2,
        )
    return report


def split_by_photo(indices: list[int], fractions: tuple[float, float, float], seed: int) -> dict[str, list[int]]:
    """Shuffle photo ``indices`` under ``seed`` and cut them into train/val/test.

    ``fractions`` are (train, val, test) and must sum to 1. A split with a non-zero
    fraction gets at least one photo, so even a handful of photos yields a validation set
    that training never sees.
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"split fractions (train, val, test) must be >= 0 and sum to 1, got {list(fractions)}")
    n = len(indices)
    needed = sum(1 for f in fractions if f > 0)
    if n < needed:
        raise ValueError(f"{n} usable photo(s) cannot fill {needed} non-empty splits {list(fractions)}")
    counts = [max(1, round(f * n)) if f > 0 else 0 for f in fractions[1:]]
    train_count = n - sum(counts)
    if train_count < (1 if fractions[0] > 0 else 0):
        raise ValueError(f"{n} usable photo(s) leave none for training with fractions {list(fractions)}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    shuffled = [indices[i] for i in order]
    val_end = train_count + counts[0]
    return {
        "train": sorted(shuffled[:train_count]),
        "val": sorted(shuffled[train_count:val_end]),
        "test": sorted(shuffled[val_end:]),
    }
