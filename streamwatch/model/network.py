"""MobileNetV2 with ECA channel attention (seed paper 000) and a multi-view head.

The backbone follows torchvision's shape: ``MobileNetV2(block=...)`` takes the
block class as an argument and the inverted-residual setting is data, so the
paper's four rebuilt blocks are four small block classes, not four networks.

Variants (selected by name with :func:`build_model`):

* ``mobilenet_v2`` - the baseline: standard setting, width 1.0, ReLU6.
* ``eca_1`` - paper Fig. 4(a): ECA applied to the output of every inverted
  residual module.
* ``eca_2`` - paper Fig. 4(b): two branches; an ECA branch computed from the
  block input runs beside the inverted residual and its output multiplies the
  inverted-residual output.
* ``eca_3`` - paper Fig. 4(c): block input x ECA output x inverted-residual
  output (three-way product).
* ``eca_4`` - paper Fig. 4(d): as (c) followed by a Sigmoid.

Every ECA variant also has an ECA module after the first convolution, as the
paper says. The figure itself is not available to us; every place where our
reading of the text is a *choice* is marked "READING:" below.

The multi-view head (:class:`MultiViewNet`) is ours, not the paper's: it runs
the same backbone on every view produced by
:func:`streamwatch.model.preprocess.make_views` (a whole-frame view plus
native-resolution tiles) and fuses the pooled features before one linear
classifier, so noise and blur that a plain resize would average away remain
visible. With one view it reduces to the plain MobileNetV2 classifier.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
from torch import nn

from streamwatch import CLASS_NAMES

#: (t, c, n, s) rows of the standard MobileNetV2 setting (Sandler et al. 2018).
INVERTED_RESIDUAL_SETTING: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)

VARIANTS: tuple[str, ...] = ("mobilenet_v2", "eca_1", "eca_2", "eca_3", "eca_4")


def _make_divisible(v: float, divisor: int = 8) -> int:
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def eca_kernel_size(channels: int, gamma: float = 2.0, beta: float = 1.0) -> int:
    """ECA-Net's adaptive kernel size: |log2(C)/gamma + b/gamma| made odd."""
    t = int(abs((math.log2(channels) + beta) / gamma))
    return max(t if t % 2 else t + 1, 1)


class ECA(nn.Module):
    """Efficient Channel Attention (Wang et al., CVPR 2020).

    Global average pooling -> 1D convolution across channels (adaptive kernel
    size, no dimensionality reduction) -> sigmoid -> channel-wise rescale.
    ``gate(x)`` returns only the (N, C, 1, 1) sigmoid weights, which the
    rebuilt blocks (b)-(d) need.
    """

    def __init__(self, channels: int, gamma: float = 2.0, beta: float = 1.0) -> None:
        super().__init__()
        k = eca_kernel_size(channels, gamma, beta)
        self.kernel_size = k
        self.conv = nn.Conv1d(1, 1, kernel_size=k, padding=(k - 1) // 2, bias=False)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        y = x.mean((2, 3)).unsqueeze(1)  # N, 1, C
        y = self.conv(y)
        return torch.sigmoid(y).transpose(1, 2).unsqueeze(-1)  # N, C, 1, 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


def _conv_bn_relu6(inp: int, oup: int, kernel: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(inp, oup, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(oup),
        nn.ReLU6(inplace=True),
    )


class InvertedResidual(nn.Module):
    """MobileNetV2 inverted residual: 1x1 expand + ReLU6, 3x3 depthwise + ReLU6,
    1x1 linear projection; shortcut when stride 1 and in == out channels."""

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        hidden = int(round(inp * expand_ratio))
        self.inp, self.oup, self.stride = inp, oup, stride
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(_conv_bn_relu6(inp, hidden, kernel=1))
        layers += [
            _conv_bn_relu6(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, oup, 1, 1, 0, bias=False),
            nn.BatchNorm2d(oup),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


class ECABlock1(InvertedResidual):
    """Fig. 4(a) ``eca_1``: ECA directly after the inverted residual module.

    READING: ECA rescales the module's *output* (after the shortcut addition),
    and is applied to every module, stride 1 and stride 2 ("applied at the end
    of every inverted residual module"). ECA-Net's own MobileNetV2 puts it
    before the addition instead; we follow the seed paper's wording.
    """

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int) -> None:
        super().__init__(inp, oup, stride, expand_ratio)
        self.eca = ECA(oup)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.eca(super().forward(x))


class _RebuiltStride1Block(InvertedResidual):
    """Common part of Fig. 4(b)-(d).

    READING: the paper rebuilds the *stride-1* blocks. A product with the
    block input (and a gate computed from the input) needs the input and the
    output to have the same shape, i.e. stride 1 and in == out channels. For
    stride-1 blocks that change the channel count (32->16, 64->96, 160->320)
    we fall back to reading (a) (ECA on the output); stride-2 blocks stay plain
    inverted residuals.
    """

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int) -> None:
        super().__init__(inp, oup, stride, expand_ratio)
        self.rebuilt = stride == 1 and inp == oup
        self.eca = ECA(oup) if stride == 1 else None

    def combine(self, x: torch.Tensor, gate: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ir = super().forward(x)
        if self.eca is None:  # stride 2: plain inverted residual
            return ir
        if not self.rebuilt:  # stride 1, channel change: reading (a)
            return self.eca(ir)
        return self.combine(x, self.eca.gate(x), ir)


class ECABlock2(_RebuiltStride1Block):
    """Fig. 4(b) ``eca_2``: two-branch block.

    READING: branch 1 is the inverted residual (with its shortcut), branch 2
    is ECA computed from the block input in parallel ("wider"); the ECA
    branch's output (its channel weights) multiplies branch 1's output:
    ``out = IR(x) * eca_gate(x)``.
    """

    def combine(self, x: torch.Tensor, gate: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        return ir * gate


class ECABlock3(_RebuiltStride1Block):
    """Fig. 4(c) ``eca_3``: input features x ECA output x inverted-residual
    output. READING: the "ECA output" is the channel weights computed from the
    input, so ``out = x * eca_gate(x) * IR(x)`` (element-wise)."""

    def combine(self, x: torch.Tensor, gate: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        return x * gate * ir


class ECABlock4(_RebuiltStride1Block):
    """Fig. 4(d) ``eca_4``: as (c) followed by a Sigmoid squashing the product
    to (0, 1): ``out = sigmoid(x * eca_gate(x) * IR(x))``."""

    def combine(self, x: torch.Tensor, gate: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x * gate * ir)


BLOCKS: dict[str, Callable[..., nn.Module]] = {
    "mobilenet_v2": InvertedResidual,
    "eca_1": ECABlock1,
    "eca_2": ECABlock2,
    "eca_3": ECABlock3,
    "eca_4": ECABlock4,
}


class MobileNetV2(nn.Module):
    """MobileNetV2 (width 1.0, ReLU6) with an injectable block class.

    ``stem_eca`` adds an ECA module after the first convolution (the seed
    paper does this in its ECA networks).
    """

    def __init__(
        self,
        num_classes: int = len(CLASS_NAMES),
        block: Callable[..., nn.Module] = InvertedResidual,
        width_mult: float = 1.0,
        inverted_residual_setting: Sequence[tuple[int, int, int, int]] = INVERTED_RESIDUAL_SETTING,
        stem_eca: bool = False,
        dropout: float = 0.2,
        last_channel: int = 1280,
    ) -> None:
        super().__init__()
        input_channel = _make_divisible(32 * width_mult)
        self.last_channel = _make_divisible(last_channel * max(1.0, width_mult))
        features: list[nn.Module] = [_conv_bn_relu6(3, input_channel, stride=2)]
        if stem_eca:
            features.append(ECA(input_channel))
        for t, c, n, s in inverted_residual_setting:
            out_channel = _make_divisible(c * width_mult)
            for i in range(n):
                features.append(block(input_channel, out_channel, s if i == 0 else 1, t))
                input_channel = out_channel
        features.append(_conv_bn_relu6(input_channel, self.last_channel, kernel=1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.last_channel, num_classes))
        _init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) -> pooled features (N, last_channel)."""
        return self.features(x).mean((2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.forward_features(x))


def _init_weights(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


class MultiViewNet(nn.Module):
    """Shared MobileNetV2 backbone over V views of one frame, fused features.

    Input (N, V, 3, S, S) as produced by ``make_views`` (view 0 = the whole
    frame downscaled, views 1.. = native-resolution tiles). Fusion (ours, not
    the paper's): concatenate the whole-view feature with the mean and the max
    of the tile features, then dropout + one linear layer -> 8 logits. With
    V == 1 this is exactly MobileNetV2's own classifier on one image.
    """

    def __init__(self, backbone: MobileNetV2, views: int, num_classes: int = len(CLASS_NAMES), dropout: float = 0.2) -> None:
        super().__init__()
        if views < 1:
            raise ValueError("views must be >= 1")
        self.views = views
        self.backbone = backbone
        c = backbone.last_channel
        fused = c if views == 1 else 3 * c
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(fused, num_classes))
        nn.init.normal_(self.head[1].weight, 0, 0.01)
        nn.init.zeros_(self.head[1].bias)
        # The backbone's own classifier is unused in the multi-view network.
        backbone.classifier = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, v = x.shape[0], x.shape[1]
        f = self.backbone.forward_features(x.reshape(n * v, x.shape[2], x.shape[3], x.shape[4]))
        f = f.reshape(n, v, -1)
        if self.views == 1:
            fused = f[:, 0]
        else:
            tiles = f[:, 1:]
            fused = torch.cat([f[:, 0], tiles.mean(1), tiles.amax(1)], dim=1)
        return self.head(fused)


def build_backbone(variant: str, num_classes: int = len(CLASS_NAMES)) -> MobileNetV2:
    """The plain single-image network of the paper for ``variant``."""
    if variant not in BLOCKS:
        raise ValueError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    return MobileNetV2(num_classes=num_classes, block=BLOCKS[variant], stem_eca=variant != "mobilenet_v2")


def build_model(variant: str, views: int = 1, num_classes: int = len(CLASS_NAMES)) -> MultiViewNet:
    """Network for ``variant`` taking (N, views, 3, S, S) input -> (N, 8) logits."""
    return MultiViewNet(build_backbone(variant, num_classes), views=views, num_classes=num_classes)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
