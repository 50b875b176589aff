"""Skip-connection convolutional autoencoder (U-Net-like), seeds 000 and 002.

Encoder: ``depth`` stride-2 convolutions (width doubling from ``width`` up to
``max_width``); decoder: as many stride-2 transposed convolutions, each followed by a
concatenated skip from the encoder level of the same size; a last 3x3 convolution sees the
input again and predicts the colour. BatchNorm and LeakyReLU(0.1) throughout (seed 004).
Seed 002's ``ColorAutoEncoder`` is ``width=64, depth=4, output=rgb``.

With ``hints=True`` the input also holds three hint channels (hint a, hint b, mask:
:mod:`colorization.hints`), so the net takes ``in_channels + 3``.

With ``global_dim > 0`` a global vector (pretrained classifier features, a latent code) is
fused at the bottleneck (:class:`GlobalFusion`): the fusion model and the conditional VAE
decoder are this network.

    python train.py model=skip_cae model.net.width=64 model.output=rgb
"""

from __future__ import annotations

import math

import torch
from torch import nn

from colorization.hints import HINT_CHANNELS
from colorization.models.blocks import ConvBNAct, GlobalFusion, UpConvBNAct, colour_head
from colorization.outputs import output_space


class SkipCAE(nn.Module):
    """Gray ``(B, in_channels, H, W)`` -> colour ``(B, 2 or 3, H, W)``, any H and W.

    ``output=bins`` (classification over ab bins) is predicted at 1/4 of the size: the
    decoder stops at the encoder level of stride 4 (``depth >= 2``)."""

    supports_bins = True

    def __init__(
        self,
        in_channels: int = 1,
        width: int = 32,
        depth: int = 4,
        max_width: int = 512,
        output: str = "ab",
        global_dim: int = 0,
        hints: bool = False,
    ) -> None:
        super().__init__()
        self.hints = bool(hints)
        in_channels = in_channels + (HINT_CHANNELS if hints else 0)
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        stop = int(math.log2(output_space(output).stride))  # decoder ends at level stop - 1 (stride 2**stop)
        if stop and depth < stop:
            raise ValueError(f"output={output} needs depth >= {stop}, got {depth}")
        widths = [min(width * 2**i, max_width) for i in range(depth)]
        self.down = nn.ModuleList(
            ConvBNAct(c_in, c_out, stride=2) for c_in, c_out in zip([in_channels, *widths[:-1]], widths)
        )
        self.fusion = GlobalFusion(widths[-1], global_dim) if global_dim > 0 else None
        # up[k] brings level depth-1-k back to level depth-2-k; its output meets that skip.
        last = max(stop - 1, 0)  # level the decoder ends at (0 for full-size outputs)
        self.up = nn.ModuleList(
            UpConvBNAct(widths[i] if i == depth - 1 else 2 * widths[i], widths[i - 1])
            for i in range(depth - 1, last, -1)
        )
        end = widths[last] if last == depth - 1 else 2 * widths[last]  # channels at the last level
        if stop:
            self.to_full, self.head = None, colour_head(end, output)
        else:
            self.to_full = UpConvBNAct(end, widths[0])
            self.head = colour_head(widths[0] + in_channels, output)

    def forward(self, x: torch.Tensor, vector: torch.Tensor | None = None) -> torch.Tensor:
        skips = []
        h = x
        for down in self.down:
            h = down(h)
            skips.append(h)
        h = skips.pop()
        if self.fusion is not None:
            if vector is None:
                raise ValueError("this network fuses a global vector: call it as net(x, vector)")
            h = self.fusion(h, vector)
        for up, skip in zip(self.up, reversed(skips)):
            h = torch.cat([up(h, skip.shape[-2:]), skip], dim=1)
        if self.to_full is None:  # a reduced-resolution output (bins)
            return self.head(h)
        h = self.to_full(h, x.shape[-2:])
        return self.head(torch.cat([h, x], dim=1))
