"""Single-file models against diffusers folders: the time to load every part of the same model through the model
manager, one JSON object per model and format.

The models: the tiny SD-1 and SDXL base test models, and (unless `--tiny-only`) a model of SD-1.5's real shapes
(UNet, CLIP ViT-L text encoder, VAE: 1.07 billion parameters, 2.1 GB in float16) with random weights, built from
the configs nodeloom ships for sd-1. Each is saved as a diffusers folder and written from it as one safetensors
file in the original layout (the tests' writer), and both are installed.

Each load starts with an empty model cache and loads every part; the two formats alternate, `ROUNDS` times over:
`first` is each format's first load in the process (imports and first calls included), `second` the median of the
loads after it. The files were
just written, so both read from the OS page cache: the figures compare the work of loading, not the disk. Parts
load in float32, as on a CPU. There is no conversion cache: a single file is converted as it is read, each time,
so `second` needs no disk beyond the file itself. Target: `single_over_folder` for `second` at most 1.5.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# The models are built by the tests' builders, from the repository root.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.original_layout import write_single_file
from tests.tiny_model import build_tiny_sd, build_tiny_sdxl, quiet_torch

from nodeloom.app.services.config.config_default import load_config
from nodeloom.app.services.invocation_services import InvocationServices, build_services
from nodeloom.app.services.model_records.model_records_common import ModelRecordChanges
from nodeloom.backend.model_manager.configs import MainCheckpointConfig, MainDiffusersConfig
from nodeloom.backend.model_manager.load import single_file
from nodeloom.backend.model_manager.taxonomy import BaseModelType

ROUNDS = 4


def emit(record: dict[str, Any]) -> None:
    print(json.dumps(record), flush=True)


def build_sd15_shaped(folder: Path) -> Path:
    """A diffusers folder of SD-1.5's architecture (the shipped sd-1 configs) with random float16 weights."""
    import shutil

    import torch
    from accelerate import init_empty_weights
    from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
    from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
    from safetensors.torch import save_file
    from transformers import CLIPTextConfig, CLIPTextModel

    configs = single_file.CHECKPOINT_CONFIGS / "sd-1"
    shutil.copytree(configs, folder, ignore=shutil.ignore_patterns("tokenizer"))
    single_file.load_tokenizer(configs / "tokenizer").save_pretrained(folder / "tokenizer")
    with init_empty_weights():
        models = {
            "unet/diffusion_pytorch_model.safetensors": UNet2DConditionModel.from_config(
                UNet2DConditionModel.load_config(configs / "unet")
            ),
            "vae/diffusion_pytorch_model.safetensors": AutoencoderKL.from_config(
                AutoencoderKL.load_config(configs / "vae")
            ),
            "text_encoder/model.safetensors": CLIPTextModel(CLIPTextConfig.from_pretrained(configs / "text_encoder")),
        }
    generator = torch.Generator().manual_seed(0)
    for name, model in models.items():
        shapes = {key: tensor.shape for key, tensor in model.state_dict().items()}
        weights = {key: torch.randn(shape, generator=generator, dtype=torch.float16) for key, shape in shapes.items()}
        save_file(weights, folder / name)
    return folder


def time_loads(
    services: InvocationServices, configs: dict[str, MainDiffusersConfig | MainCheckpointConfig]
) -> dict[str, list[float]]:
    """Seconds to load every part of each model into an empty cache, `ROUNDS` times, the formats alternating."""
    seconds: dict[str, list[float]] = {kind: [] for kind in configs}
    load = services.model_manager.load
    for _ in range(ROUNDS):
        for kind, config in configs.items():
            load.empty_cache()
            parts = (
                config.submodels
                if isinstance(config, MainDiffusersConfig)
                else list(single_file.pipeline_parts(single_file.checkpoint_config_folder(config)))
            )
            started = time.perf_counter()
            for part in parts:
                with load.load_model(config, part):
                    pass
            seconds[kind].append(time.perf_counter() - started)
    load.empty_cache()
    return seconds


def bench(name: str, folder: Path, root: Path, base: BaseModelType | None, config_path: bool) -> None:
    services = build_services(load_config(root, ram_cache_gb=12, model_install_roots=[folder.parent]))
    try:
        models = services.config.resolve(services.config.models_dir)
        models.mkdir(parents=True, exist_ok=True)
        path = write_single_file(folder, models / f"{name}.safetensors")
        install = services.model_manager.install.install_path
        folder_config = install(folder, ModelRecordChanges(base=base))
        assert isinstance(folder_config, MainDiffusersConfig)
        single = install(path, ModelRecordChanges(base=base, config_path=str(folder) if config_path else None))
        assert isinstance(single, MainCheckpointConfig)
        seconds = time_loads(services, {"folder": folder_config, "single_file": single})
    finally:
        services.database.close()
    for when, runs in (("first", slice(0, 1)), ("second", slice(1, None))):
        folder_s, single_s = (statistics.median(seconds[kind][runs]) for kind in ("folder", "single_file"))
        emit(
            {
                "measurement": "model_load",
                "model": name,
                "load": when,
                "folder_ms": round(folder_s * 1000, 1),
                "single_file_ms": round(single_s * 1000, 1),
                "single_over_folder": round(single_s / folder_s, 3),
                "single_file_bytes": path.stat().st_size,
                "conversion_cache_bytes": 0,
            }
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiny-only", action="store_true", help="skip the model of SD-1.5's real size")
    arguments = parser.parse_args()
    quiet_torch()
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        bench(
            "tiny-sd1",
            build_tiny_sd(folder / "sd1" / "tiny-sd"),
            folder / "root-sd1",
            BaseModelType.StableDiffusion1,
            True,
        )
        base, _ = build_tiny_sdxl(folder / "sdxl")
        bench("tiny-sdxl", base, folder / "root-sdxl", None, True)
        if not arguments.tiny_only:
            model = build_sd15_shaped(folder / "sd15" / "sd15-random")
            bench("sd15-shaped-random-fp16", model, folder / "root-sd15", BaseModelType.StableDiffusion1, False)


if __name__ == "__main__":
    main()
