"""Seamless (tileable) images: convolutions that wrap around the left/right and/or top/bottom edges."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from typing import Literal

import torch
from torch.nn import functional

SeamlessAxis = Literal["x", "y"]


def _wrapping_forward(
    conv: torch.nn.Conv2d, padding: tuple[int, ...], axes: Collection[SeamlessAxis]
) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]:
    """`conv`'s `_conv_forward`, padding circularly along `axes` and with zeros along the other."""
    pad_y, pad_x = padding
    x_mode = "circular" if "x" in axes else "constant"
    y_mode = "circular" if "y" in axes else "constant"

    def forward(input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        padded = functional.pad(input, (pad_x, pad_x, 0, 0), mode=x_mode)
        padded = functional.pad(padded, (0, 0, pad_y, pad_y), mode=y_mode)
        return functional.conv2d(padded, weight, bias, conv.stride, 0, conv.dilation, conv.groups)

    return forward


@contextmanager
def seamless(models: Collection[torch.nn.Module], axes: Collection[SeamlessAxis]) -> Iterator[None]:
    """Makes every zero-padded Conv2d of the models wrap along `axes` while inside; restores them on exit.

    The patch is an instance attribute shadowing `Conv2d._conv_forward`: deleting it restores the layer exactly,
    so a cached model is never left seamless, whatever raised inside. No axes, no patch.
    """
    patched: list[torch.nn.Conv2d] = []
    try:
        if axes:
            for model in models:
                for layer in model.modules():
                    if (
                        isinstance(layer, torch.nn.Conv2d)
                        and layer.padding_mode == "zeros"
                        and not isinstance(layer.padding, str)
                        and any(layer.padding)
                    ):
                        wrapping = _wrapping_forward(layer, layer.padding, axes)
                        layer._conv_forward = wrapping  # type: ignore[method-assign,assignment]
                        patched.append(layer)
        yield
    finally:
        for layer in patched:
            del layer._conv_forward
