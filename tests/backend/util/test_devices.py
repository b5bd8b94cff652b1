"""The execution device and dtype chosen from the config."""

from __future__ import annotations

import pytest
import torch

from nodeloom.backend.util.devices import DeviceUnavailableError, choose_execution_device


def test_the_cpu_runs_in_float32_unless_told_otherwise() -> None:
    chosen = choose_execution_device("cpu")
    assert chosen.device == torch.device("cpu") and chosen.dtype == torch.float32 and chosen.is_cpu
    assert choose_execution_device("cpu", "bfloat16").dtype == torch.bfloat16


@pytest.mark.skipif(torch.cuda.is_available(), reason="auto picks CUDA here")
def test_auto_falls_back_to_the_cpu_without_cuda_or_mps() -> None:
    if torch.backends.mps.is_available():
        assert choose_execution_device().device.type == "mps"
    else:
        assert choose_execution_device() == choose_execution_device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_asking_for_cuda_without_it_is_refused_clearly() -> None:
    with pytest.raises(DeviceUnavailableError, match="asks for the device 'cuda', but torch sees none"):
        choose_execution_device("cuda")
