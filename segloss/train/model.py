"""A tiny U-Net that trains in real time on a CPU.

The live-training and comparison pages train one of these per loss, one optimiser step per
rerun, so it is sized for speed rather than accuracy: three down/up levels, two 3x3
conv-BatchNorm-ReLU layers per level (one, at half width, at full resolution), skip
connections by concatenation and bilinear upsampling. About 0.2 M parameters at
``width=16``; weights are kept channels-last, which oneDNN runs ~25% faster on CPU.

Example:
    >>> import torch
    >>> from segloss.train.model import TinyUNet, count_parameters
    >>> net = TinyUNet(in_channels=3, num_classes=9)
    >>> net(torch.rand(2, 3, 64, 64)).shape
    torch.Size([2, 9, 64, 64])
    >>> count_parameters(net) < 500_000
    True
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: Input height and width are padded internally up to a multiple of this.
DOWNSAMPLE_FACTOR = 8


def _conv_bn_relu(in_channels: int, out_channels: int) -> list[nn.Module]:
    return [
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]


class _Block(nn.Sequential):
    """``layers`` x (3x3 conv -> BatchNorm -> ReLU); the first conv maps in -> out channels."""

    def __init__(self, in_channels: int, out_channels: int, layers: int = 2) -> None:
        modules = _conv_bn_relu(in_channels, out_channels)
        for _ in range(layers - 1):
            modules += _conv_bn_relu(out_channels, out_channels)
        super().__init__(*modules)


def _check_positive_int(value: int, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")


class TinyUNet(nn.Module):
    """Small U-Net for per-pixel classification.

    Encoder widths are ``w/2, 2w, 4w`` at resolutions 1, 1/2, 1/4 and a ``4w`` bottleneck
    at 1/8; the decoder upsamples bilinearly, concatenates the skip and applies a block
    (widths ``2w, w, w``), and a 1x1 convolution gives the logits. The full-resolution
    layers are the cheap ones (one conv each, ``w/2`` channels in the encoder) since they
    cost the most time per parameter. Inputs whose height or width is not a multiple of 8
    are reflect-padded (replicate-padded when too small to reflect) and the logits cropped
    back, so any ``H, W >= 1`` works (in training mode BatchNorm needs more than one value
    per channel at the bottleneck: ``B * ceil(H / 8) * ceil(W / 8) > 1``).

    Args:
        in_channels: channels of the input image (3 for RGB).
        num_classes: C, the number of output logits per pixel (>= 2).
        width: channel width ``w`` of the first level (>= 1).

    Shape:
        - Input: float ``(B, in_channels, H, W)``.
        - Output: logits ``(B, num_classes, H, W)``.

    Raises:
        TypeError: if an argument is not an int.
        ValueError: if ``in_channels`` or ``width`` is < 1 or ``num_classes`` < 2.
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 9, width: int = 16) -> None:
        super().__init__()
        _check_positive_int(in_channels, "in_channels")
        _check_positive_int(num_classes, "num_classes")
        _check_positive_int(width, "width")
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.width = width
        w0, w1, w2, w3 = max(1, width // 2), width, 2 * width, 4 * width
        self.enc1 = _Block(in_channels, w0, layers=1)
        self.enc2 = _Block(w0, w2)
        self.enc3 = _Block(w2, w3)
        self.bottleneck = _Block(w3, w3)
        self.dec3 = _Block(w3 + w3, w2)
        self.dec2 = _Block(w2 + w2, w1)
        self.dec1 = _Block(w1 + w0, w1, layers=1)
        self.head = nn.Conv2d(w1, num_classes, kernel_size=1)
        self.to(memory_format=torch.channels_last)

    @staticmethod
    def _up_cat(x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return torch.cat([x, skip], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, num_classes, H, W)`` for images ``(B, in_channels, H, W)``.

        Raises:
            TypeError: if ``x`` is not a floating point tensor.
            ValueError: if ``x`` is not 4-D with ``in_channels`` channels.
        """
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise TypeError(
                f"TinyUNet expects a floating point tensor, got {getattr(x, 'dtype', type(x))}"
            )
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"TinyUNet expects input of shape (B, {self.in_channels}, H, W), "
                f"got {tuple(x.shape)}"
            )
        height, width = x.shape[-2:]
        pad_h = -height % DOWNSAMPLE_FACTOR
        pad_w = -width % DOWNSAMPLE_FACTOR
        if pad_h or pad_w:
            mode = "reflect" if pad_h < height and pad_w < width else "replicate"
            x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
        if self.dec1[0].weight.is_contiguous(memory_format=torch.channels_last):
            x = x.contiguous(memory_format=torch.channels_last)  # match the weights' layout
        s1 = self.enc1(x)
        s2 = self.enc2(F.max_pool2d(s1, 2))
        s3 = self.enc3(F.max_pool2d(s2, 2))
        b = self.bottleneck(F.max_pool2d(s3, 2))
        d3 = self.dec3(self._up_cat(b, s3))
        d2 = self.dec2(self._up_cat(d3, s2))
        d1 = self.dec1(self._up_cat(d2, s1))
        logits = self.head(d1)
        return logits[..., :height, :width].contiguous()


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of scalar parameters of ``model`` (only those with ``requires_grad`` by default).

    Raises:
        TypeError: if ``model`` is not a ``torch.nn.Module``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
