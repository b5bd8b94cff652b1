"""Schedulers by InvokeAI's names, each a diffusers scheduler class and the settings that set it apart.

Torch-free at import: the names are the `scheduler` field's choices, which every node schema lists. diffusers is
imported only when a scheduler is made.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal, Protocol, cast, get_args

if TYPE_CHECKING:
    import torch

SCHEDULER_NAME_VALUES = Literal[
    "ddim",
    "ddpm",
    "deis",
    "deis_k",
    "lms",
    "lms_k",
    "pndm",
    "heun",
    "heun_k",
    "euler",
    "euler_k",
    "euler_a",
    "kdpm_2",
    "kdpm_2_k",
    "kdpm_2_a",
    "kdpm_2_a_k",
    "dpmpp_2s",
    "dpmpp_2s_k",
    "dpmpp_2m",
    "dpmpp_2m_k",
    "dpmpp_2m_sde",
    "dpmpp_2m_sde_k",
    "dpmpp_3m",
    "dpmpp_3m_k",
    "unipc",
    "unipc_k",
    "lcm",
    "tcd",
]
"""The schedulers nodes may name. InvokeAI's `dpmpp_sde` and `er_sde` are left out: the first needs torchsde,
the second has no diffusers class."""


class Scheduler(Protocol):
    """What the denoising loop uses of a diffusers scheduler: every scheduler class has it, though diffusers'
    `SchedulerMixin` declares none of it."""

    order: int
    timesteps: torch.Tensor
    init_noise_sigma: float | torch.Tensor
    config: Mapping[str, Any]

    def set_timesteps(self, num_inference_steps: int, device: torch.device | str | None = None) -> None: ...

    def scale_model_input(self, sample: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor: ...

    def step(self, model_output: torch.Tensor, timestep: torch.Tensor, sample: torch.Tensor, **kwargs: Any) -> Any: ...

    def add_noise(
        self, original_samples: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor
    ) -> torch.Tensor: ...


_KARRAS = {"use_karras_sigmas": True}

SCHEDULERS: Mapping[str, tuple[str, Mapping[str, Any]]] = {
    "ddim": ("DDIMScheduler", {}),
    "ddpm": ("DDPMScheduler", {}),
    "deis": ("DEISMultistepScheduler", {}),
    "deis_k": ("DEISMultistepScheduler", _KARRAS),
    "lms": ("LMSDiscreteScheduler", {}),
    "lms_k": ("LMSDiscreteScheduler", _KARRAS),
    "pndm": ("PNDMScheduler", {}),
    "heun": ("HeunDiscreteScheduler", {"use_karras_sigmas": False}),
    "heun_k": ("HeunDiscreteScheduler", _KARRAS),
    "euler": ("EulerDiscreteScheduler", {"use_karras_sigmas": False}),
    "euler_k": ("EulerDiscreteScheduler", _KARRAS),
    "euler_a": ("EulerAncestralDiscreteScheduler", {}),
    "kdpm_2": ("KDPM2DiscreteScheduler", {}),
    "kdpm_2_k": ("KDPM2DiscreteScheduler", _KARRAS),
    "kdpm_2_a": ("KDPM2AncestralDiscreteScheduler", {}),
    "kdpm_2_a_k": ("KDPM2AncestralDiscreteScheduler", _KARRAS),
    "dpmpp_2s": ("DPMSolverSinglestepScheduler", {}),
    "dpmpp_2s_k": ("DPMSolverSinglestepScheduler", _KARRAS),
    "dpmpp_2m": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": False}),
    "dpmpp_2m_k": ("DPMSolverMultistepScheduler", _KARRAS),
    "dpmpp_2m_sde": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++"}),
    "dpmpp_2m_sde_k": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++", **_KARRAS}),
    "dpmpp_3m": ("DPMSolverMultistepScheduler", {"solver_order": 3}),
    "dpmpp_3m_k": ("DPMSolverMultistepScheduler", {"solver_order": 3, **_KARRAS}),
    "unipc": ("UniPCMultistepScheduler", {}),
    "unipc_k": ("UniPCMultistepScheduler", _KARRAS),
    "lcm": ("LCMScheduler", {}),
    "tcd": ("TCDScheduler", {}),
}
"""Each name's diffusers class and the settings laid over the model's own scheduler config."""

if set(SCHEDULERS) != set(get_args(SCHEDULER_NAME_VALUES)):
    raise RuntimeError("SCHEDULERS and SCHEDULER_NAME_VALUES must name the same schedulers")


def make_scheduler(name: SCHEDULER_NAME_VALUES, model_config: Mapping[str, Any]) -> Scheduler:
    """A fresh scheduler of the named kind, made from the model's scheduler config (its betas and timestep
    spacing), so that every run starts from a clean state whatever scheduler the model ships with."""
    import diffusers

    class_name, overrides = SCHEDULERS[name]
    scheduler_class = getattr(diffusers, class_name)
    # The config goes in whole, private keys included: "_use_default_values" is how from_config knows which
    # settings the model never chose, so that another scheduler class takes its own defaults for them.
    return cast("Scheduler", scheduler_class.from_config({**model_config, **overrides}))
