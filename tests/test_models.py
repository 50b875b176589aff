"""SkipCAE: any input size, ab in [-1, 1], and it can fit a batch (it has no wiring bug)."""

import pytest
import torch

from colorization.models import GrayBaseline, SkipCAE
from colorization.tasks import ColorizationModule
from tests.helpers import real_batch


@pytest.mark.parametrize("size", [(150, 150), (97, 131), (33, 47), (64, 64), (7, 300), (1, 1)])
@pytest.mark.parametrize("depth", [1, 3, 5])
def test_output_matches_any_input_size(size, depth):
    net = SkipCAE(width=8, depth=depth).eval()
    with torch.no_grad():
        out = net(torch.randn(2, 1, *size))
    assert out.shape == (2, 2, *size)


def test_output_is_bounded_and_starts_as_gray():
    net = SkipCAE(width=8)
    x = torch.randn(2, 1, 40, 40) * 3
    assert torch.equal(net(x), torch.zeros(2, 2, 40, 40))  # untrained: the gray baseline
    torch.nn.init.normal_(net.head[0].weight, std=10.0)
    out = net(x)
    assert out.abs().max() <= 1 and out.abs().max() > 0.5


def test_width_and_depth_are_configurable():
    small, large = SkipCAE(width=8, depth=2), SkipCAE(width=16, depth=4)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(small) < count(large)
    assert len(large.down) == 4 and large.down[-1][0].out_channels == 128
    with pytest.raises(ValueError, match="depth"):
        SkipCAE(depth=0)


def test_overfits_one_batch_of_real_photos():
    torch.manual_seed(0)
    batch = real_batch()
    module = ColorizationModule(SkipCAE(width=16, depth=3), loss="l1")
    optimizer = torch.optim.Adam(module.parameters(), lr=3e-3)
    losses = []
    for _ in range(150):
        loss = module.criterion(module(batch["L"]), batch["ab"])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] <= 0.2 * losses[0], f"loss went {losses[0]:.4f} -> {losses[-1]:.4f}"


def test_gray_baseline_predicts_no_colour():
    batch = real_batch(2)
    assert torch.equal(GrayBaseline()(batch["L"]), torch.zeros_like(batch["ab"]))
