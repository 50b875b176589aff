"""Handwritten digits for the seed-002 autoencoder experiments (reconstruction, denoising, VAE).

``sklearn``: scikit-learn's bundled 1,797 digits, 8x8, offline. ``mnist``: torchvision's
MNIST, 28x28, from ``root`` (``download=true`` with network access). Batches are
``{"image": (B, 1, H, W)}`` in [0, 1].
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, TensorDataset

from colorization.data.base import SplitDataModule
from colorization.data.images import DataSourceError
from colorization.data.scan import split_by_photo


def load_digits_tensor(source: str, root: str | None = None, download: bool = False) -> torch.Tensor:
    """All digits of ``source`` as a float tensor (N, 1, H, W) in [0, 1]."""
    if source == "sklearn":
        from sklearn.datasets import load_digits

        return torch.from_numpy(load_digits().images).float().div(16.0)[:, None]
    if source == "mnist":
        from torchvision.datasets import MNIST

        try:
            parts = [MNIST(str(root), train=train, download=download) for train in (True, False)]
        except RuntimeError as error:
            raise DataSourceError(
                f"MNIST not found under {root} ({error}); add data.download=true on a machine with network "
                "access, or use data.source=sklearn (bundled, offline)"
            ) from error
        return torch.cat([p.data for p in parts]).float().div(255.0)[:, None]
    raise ValueError(f"unknown digits source {source!r}; choose sklearn or mnist")


class DigitsDataModule(SplitDataModule):
    """Digits split ``fractions`` (train, val, test) under ``seed``; images are small, kept in memory."""

    def __init__(
        self,
        source: str = "sklearn",
        root: str | None = None,
        download: bool = False,
        fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
        seed: int = 42,
        batch_size: int = 64,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        self.source, self.root, self.download = source, root, download
        self.fractions, self.seed, self.batch_size, self.num_workers = tuple(fractions), seed, batch_size, num_workers
        self.datasets: dict[str, TensorDataset] = {}

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        images = load_digits_tensor(self.source, self.root, self.download)
        splits = split_by_photo(list(range(len(images))), self.fractions, self.seed)
        self.datasets = {name: TensorDataset(images[idx]) for name, idx in splits.items() if idx}

    def loader(self, split: str, shuffle: bool) -> DataLoader:
        return DataLoader(
            self.datasets[split], batch_size=self.batch_size, shuffle=shuffle, num_workers=self.num_workers
        )

    def on_after_batch_transfer(self, batch: list[torch.Tensor], dataloader_idx: int) -> dict[str, torch.Tensor]:
        return {"image": batch[0]}
