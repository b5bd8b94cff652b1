"""The device models run on and the dtype they are loaded in, chosen once from the config."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from nodeloom.errors import NodeloomError

if TYPE_CHECKING:
    import torch

DeviceName = str
"""auto, cpu, mps, cuda (the current CUDA device) or cuda:N (the CUDA device of index N); see `DEVICE_PATTERN`."""

DEVICE_PATTERN = r"^(auto|cpu|mps|cuda(:\d+)?)$"
PrecisionName = Literal["auto", "float16", "bfloat16", "float32"]


class DeviceUnavailableError(NodeloomError):
    """The config asks for a device that torch does not see."""


def parse_devices(text: str) -> list[DeviceName]:
    """A comma-separated list of device names (as `--devices` takes it), each checked against `DEVICE_PATTERN`."""
    devices = [name.strip() for name in text.split(",")]
    wrong = [name for name in devices if not re.match(DEVICE_PATTERN, name)]
    if wrong:
        named = ", ".join(map(repr, wrong))
        raise ValueError(f"devices are auto, cpu, mps, cuda or cuda:N (N a GPU's index), comma-separated; got {named}")
    return devices


@dataclass(frozen=True)
class ExecutionDevice:
    """Where models run while locked, and the dtype they are loaded in."""

    device: torch.device
    dtype: torch.dtype

    @property
    def is_cpu(self) -> bool:
        """True when models run where they are stored, in RAM: nothing ever moves."""
        return self.device.type == "cpu"


def choose_execution_device(device: DeviceName = "auto", precision: PrecisionName = "auto") -> ExecutionDevice:
    """`device` if torch sees it, "auto" meaning CUDA, else MPS, else the CPU; "auto" precision is fp16 on CUDA.

    fp32 elsewhere: CPUs compute fp16 slowly or not at all, and MPS has produced black images in fp16.
    """
    import torch

    available = {
        "cpu": True,
        "cuda": torch.cuda.is_available(),
        "mps": torch.backends.mps.is_available(),
    }
    kind, _, index = device.partition(":")
    if kind == "auto":
        chosen = next(name for name in ("cuda", "mps", "cpu") if available[name])
    elif available.get(kind) and (not index or int(index) < torch.cuda.device_count()):
        chosen = device
    else:
        raise DeviceUnavailableError(
            f"The config asks for the device '{device}', but torch sees none: set device to 'auto' or 'cpu'"
        )
    chosen_device = torch.device(chosen)
    dtypes = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
    dtype = (
        dtypes[precision] if precision != "auto" else torch.float16 if chosen_device.type == "cuda" else torch.float32
    )
    return ExecutionDevice(device=chosen_device, dtype=dtype)
