"""The execution device and dtype chosen from the config."""

from __future__ import annotations

import pytest
import torch

from nodeloom.backend.util.devices import DeviceUnavailableError, choose_execution_device, parse_devices


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


@pytest.mark.skipif(torch.cuda.device_count() > 3, reason="this machine has a CUDA device of index 3")
def test_a_cuda_index_torch_does_not_see_is_refused_clearly() -> None:
    with pytest.raises(DeviceUnavailableError, match="asks for the device 'cuda:3'"):
        choose_execution_device("cuda:3")


def test_device_lists_name_each_wrong_entry() -> None:
    assert parse_devices("cuda:0, cuda:1,cpu") == ["cuda:0", "cuda:1", "cpu"]
    with pytest.raises(ValueError, match="got 'gpu1', 'cuda:'"):
        parse_devices("cpu,gpu1,cuda:")
