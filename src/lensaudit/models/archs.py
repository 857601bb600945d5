"""The published DR10 lens-finder architectures (all with a single logit output).

- ``resnet18``: torchvision ResNet-18, random init, final layer Linear(512, 1).
- ``efficientnet_v2_s``: torchvision EfficientNetV2-S, head Dropout(0.2) + Linear(1280, 1);
  optionally initialised from a local weights file (hub downloads are not available offline).
- ``bottleneck_resnet``: a compact pre-activation bottleneck ResNet in the style of Lanusse et
  al. 2018 (CMU DeepLens), about 194K parameters like the published one (194,433).
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision import models as tvm

from lensaudit.models.registry import load_weights_file, register_model


@register_model("resnet18", "torchvision ResNet-18, Linear(512, 1) head", reference_params=None)
def resnet18(in_chans: int = 3) -> nn.Module:
    m = tvm.resnet18(weights=None, num_classes=1)
    if in_chans != 3:
        m.conv1 = nn.Conv2d(in_chans, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return m


@register_model("efficientnet_v2_s", "torchvision EfficientNetV2-S, Dropout(0.2) + Linear(1280, 1) head")
def efficientnet_v2_s(in_chans: int = 3, dropout: float = 0.2, weights_file: str | None = None) -> nn.Module:
    m = tvm.efficientnet_v2_s(weights=None)
    if weights_file:
        load_weights_file(m, weights_file, skip_prefixes=("classifier.",))
    if in_chans != 3:
        m.features[0][0] = nn.Conv2d(in_chans, 24, kernel_size=3, stride=2, padding=1, bias=False)
    m.classifier = nn.Sequential(nn.Dropout(p=dropout, inplace=True), nn.Linear(1280, 1))
    return m


class _PreActBottleneck(nn.Module):
    def __init__(self, cin: int, mid: int, cout: int, stride: int):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), nn.Conv2d(cin, mid, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(mid), nn.Conv2d(mid, mid, 3, stride=stride, padding=1, bias=False)
        self.bn3, self.conv3 = nn.BatchNorm2d(mid), nn.Conv2d(mid, cout, 1, bias=False)
        self.act = nn.ELU(inplace=False)
        self.short = None if (cin == cout and stride == 1) else nn.Conv2d(cin, cout, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.act(self.bn1(x))
        s = x if self.short is None else self.short(pre)
        h = self.conv1(pre)
        h = self.conv2(self.act(self.bn2(h)))
        h = self.conv3(self.act(self.bn3(h)))
        return h + s


class BottleneckResNet(nn.Module):
    """Stem conv 7x7 -> stages of pre-activation bottleneck units -> BN/ELU -> global pool -> Linear(., 1)."""

    def __init__(self, in_chans: int = 3, stem: int = 32,
                 stages: tuple[tuple[int, int, int, int], ...] = ((32, 16, 3, 1), (64, 32, 3, 2), (128, 57, 3, 2))):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_chans, stem, 7, padding=3, bias=False))
        blocks, cin = [], stem
        for cout, mid, n, stride in stages:
            for i in range(n):
                blocks.append(_PreActBottleneck(cin, mid, cout, stride if i == 0 else 1))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.post = nn.Sequential(nn.BatchNorm2d(cin), nn.ELU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.post(self.blocks(self.stem(x)))
        return self.fc(torch.flatten(self.pool(h), 1))


@register_model("bottleneck_resnet", "compact pre-activation bottleneck ResNet (Lanusse et al. 2018 style)",
                reference_params=194_433)
def bottleneck_resnet(in_chans: int = 3, stem: int = 32, stages=None) -> nn.Module:
    kw = {} if stages is None else {"stages": tuple(tuple(s) for s in stages)}
    return BottleneckResNet(in_chans=in_chans, stem=stem, **kw)
