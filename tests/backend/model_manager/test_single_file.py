"""Single-file checkpoints: probing their base and kind from tensor names and shapes, the configs and vocabulary
nodeloom ships for them, and converting each part back to the very tensors of the diffusers model it came from."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from tests.original_layout import original_tensors, write_single_file, write_vae_file
from tests.tiny_model import write_checkpoint

from nodeloom.backend.model_manager.errors import ModelLoadError
from nodeloom.backend.model_manager.load import single_file
from nodeloom.backend.model_manager.probe import probe_model
from nodeloom.backend.model_manager.taxonomy import (
    BaseModelType,
    ModelFormat,
    ModelType,
    SchedulerPredictionType,
    SubModelType,
)

WEIGHT_PARTS = (SubModelType.UNet, SubModelType.VAE, SubModelType.TextEncoder, SubModelType.TextEncoder2)


def folder_tensors(folder: Path) -> dict[str, torch.Tensor]:
    (weights,) = folder.glob("*.safetensors")
    return load_file(weights)


def assert_same_tensors(model: torch.nn.Module, expected: dict[str, torch.Tensor]) -> None:
    state = model.state_dict()
    assert set(state) == set(expected)
    assert all(torch.equal(state[name], expected[name]) for name in expected)


@pytest.fixture(scope="module")
def pipelines(tiny_sd_model: Path, tiny_sdxl_models: tuple[Path, Path]) -> dict[str, Path]:
    return {"sd-1": tiny_sd_model, "sdxl": tiny_sdxl_models[0], "sdxl-refiner": tiny_sdxl_models[1]}


@pytest.mark.parametrize("name", ["sd-1", "sdxl", "sdxl-refiner"])
def test_each_part_of_a_single_file_loads_as_the_diffusers_part_it_was_written_from(
    pipelines: dict[str, Path], name: str, tmp_path: Path
) -> None:
    folder = pipelines[name]
    path = write_single_file(folder, tmp_path / f"{name}.safetensors")
    parts = [part for part in single_file.pipeline_parts(folder) if part in WEIGHT_PARTS]
    assert len(parts) == {"sd-1": 3, "sdxl": 4, "sdxl-refiner": 3}[name]
    for part in parts:
        model = single_file.load_checkpoint_part(path, folder, part, torch.float32)
        assert_same_tensors(model, folder_tensors(folder / part.value))


def test_a_pickle_checkpoint_is_read_as_weights_and_loads_alike(tiny_sd_model: Path, tmp_path: Path) -> None:
    tensors = load_file(write_single_file(tiny_sd_model, tmp_path / "tiny.safetensors"))
    torch.save({"state_dict": tensors, "global_step": 470000}, tmp_path / "tiny.ckpt")
    unet = single_file.load_checkpoint_part(tmp_path / "tiny.ckpt", tiny_sd_model, SubModelType.UNet, torch.float32)
    assert_same_tensors(unet, folder_tensors(tiny_sd_model / "unet"))


def test_a_vae_file_loads_in_the_original_layout_and_in_diffusers(tiny_sd_model: Path, tmp_path: Path) -> None:
    expected = folder_tensors(tiny_sd_model / "vae")
    original = write_vae_file(tiny_sd_model / "vae", tmp_path / "vae.safetensors")
    (as_diffusers,) = (tiny_sd_model / "vae").glob("*.safetensors")
    for path in (original, as_diffusers):
        assert_same_tensors(single_file.load_vae(path, "", tiny_sd_model / "vae", torch.float32), expected)


def test_a_part_converts_to_the_dtype_asked_for(tiny_sd_model: Path, tmp_path: Path) -> None:
    path = write_single_file(tiny_sd_model, tmp_path / "tiny.safetensors")
    encoder = single_file.load_checkpoint_part(path, tiny_sd_model, SubModelType.TextEncoder, torch.bfloat16)
    assert {parameter.dtype for parameter in encoder.parameters()} == {torch.bfloat16}


def test_a_file_that_does_not_fit_the_configs_is_refused_naming_both(tiny_sd_model: Path, tmp_path: Path) -> None:
    path = write_checkpoint(tmp_path / "dream.safetensors")
    with pytest.raises(ModelLoadError, match=rf"the UNet2DConditionModel of {path} lacks \d+ tensors that the configs"):
        single_file.load_checkpoint_part(path, tiny_sd_model, SubModelType.UNet, torch.float32)
    with pytest.raises(ModelLoadError, match=r"holds no text encoder under cond_stage_model\.transformer\."):
        single_file.load_checkpoint_part(path, tiny_sd_model, SubModelType.TextEncoder, torch.float32)


@pytest.mark.parametrize(
    ("name", "unet", "text_encoders"),
    [
        # The published parameter counts of SD-1.5, SD-2.x and SDXL 1.0: CLIP ViT-L/14, OpenCLIP ViT-H/14 without
        # its last layer (which SD-2 does not use), and OpenCLIP ViT-bigG/14 with its projection.
        ("sd-1", 859_520_964, {"text_encoder": 123_060_480}),
        ("sd-2", 865_910_724, {"text_encoder": 340_387_840}),
        ("sd-2-v", 865_910_724, {"text_encoder": 340_387_840}),
        ("sdxl", 2_567_463_684, {"text_encoder": 123_060_480, "text_encoder_2": 694_659_840}),
    ],
)
def test_the_shipped_configs_build_the_published_architectures(
    name: str, unet: int, text_encoders: dict[str, int]
) -> None:
    import transformers
    from accelerate import init_empty_weights
    from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
    from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel

    def count(model: torch.nn.Module) -> int:
        return sum(parameter.numel() for parameter in model.parameters())

    folder = single_file.CHECKPOINT_CONFIGS / name
    with init_empty_weights():
        assert count(UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(folder / "unet"))) == unet
        assert count(AutoencoderKL.from_config(AutoencoderKL.load_config(folder / "vae"))) == 83_653_863
        for part, parameters in text_encoders.items():
            config = transformers.CLIPTextConfig.from_pretrained(folder / part)
            assert config.architectures is not None
            assert count(getattr(transformers, config.architectures[0])(config)) == parameters
    assert set(single_file.pipeline_parts(folder)) == {
        SubModelType.UNet,
        SubModelType.VAE,
        SubModelType.Scheduler,
        *(SubModelType(part) for part in text_encoders),
        *(SubModelType(part.replace("text_encoder", "tokenizer")) for part in text_encoders),
    }
    scheduler = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler["prediction_type"] == ("v_prediction" if name == "sd-2-v" else "epsilon")


@pytest.mark.parametrize("name", ["sd-1", "sd-2", "sd-2-v", "sdxl", "sdxl-refiner"])
def test_a_single_file_of_real_size_converts_to_every_tensor_of_the_shipped_configs(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On the meta device, so that no weights are made: each part built from the shipped configs, its tensors put
    in the original layout, converts back to the part's every tensor, in its shape."""
    import transformers
    from accelerate import init_empty_weights
    from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
    from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel

    folder = single_file.CHECKPOINT_CONFIGS / name
    parts = [part for part in single_file.pipeline_parts(folder) if part in WEIGHT_PARTS]
    with init_empty_weights():
        models: dict[SubModelType, Any] = {
            SubModelType.UNet: UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(folder / "unet")),
            SubModelType.VAE: AutoencoderKL.from_config(AutoencoderKL.load_config(folder / "vae")),
        }
        for part in parts:
            if part in (SubModelType.TextEncoder, SubModelType.TextEncoder2):
                config = transformers.CLIPTextConfig.from_pretrained(folder / part.value)
                assert config.architectures is not None
                models[part] = getattr(transformers, config.architectures[0])(config)
    layout_names = {part: part.value for part in models}
    if name.startswith("sd-2"):
        layout_names[SubModelType.TextEncoder] = "open_clip_text_encoder"
    # The UNet's and the VAE's diffusers configs say how their blocks are laid out; the text encoders need none.
    configs = {part: dict(models[part].config) for part in (SubModelType.UNet, SubModelType.VAE)}
    tensors = original_tensors(
        {layout_names[part]: (model.state_dict(), configs.get(part, {})) for part, model in models.items()}
    )
    monkeypatch.setattr(
        single_file,
        "load_state_dict",
        lambda path, prefix="": {key: tensor for key, tensor in tensors.items() if key.startswith(prefix)},
    )
    for part in parts:
        loaded = single_file.load_checkpoint_part(Path(f"{name}.safetensors"), folder, part, torch.float16)
        expected = {key: tensor.shape for key, tensor in models[part].state_dict().items()}
        assert {key: tensor.shape for key, tensor in loaded.state_dict().items()} == expected
        assert {parameter.dtype for parameter in loaded.parameters()} == {torch.float16}


def test_the_shipped_tokenizers_are_clips(tmp_path: Path) -> None:
    sd1 = single_file.load_tokenizer(single_file.CHECKPOINT_CONFIGS / "sd-1" / "tokenizer")
    # CLIP's ids of these words, as every SD-1 prompt is tokenized.
    assert sd1("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert sd1("Hello, world!").input_ids == [49406, 3306, 267, 1002, 256, 49407]
    assert len(sd1) == 49408 and sd1.model_max_length == 77
    assert sd1.pad_token_id == 49407
    # OpenCLIP's tokenizers (SD-2's, SDXL's second) pad with "!".
    sdxl2 = single_file.load_tokenizer(single_file.CHECKPOINT_CONFIGS / "sdxl" / "tokenizer_2")
    assert sdxl2("a cat", padding="max_length", max_length=6).input_ids == [49406, 320, 2368, 49407, 0, 0]


def test_a_config_folder_with_its_own_vocabulary_keeps_it(tiny_sd_model: Path) -> None:
    tokenizer = single_file.load_tokenizer(tiny_sd_model / "tokenizer")
    assert len(tokenizer) == 56


def test_single_files_probe_as_their_base(pipelines: dict[str, Path], tmp_path: Path) -> None:
    sd1 = probe_model(write_checkpoint(tmp_path / "sd1.safetensors"))
    assert (sd1.type, sd1.format, sd1.base) == (ModelType.Main, ModelFormat.Checkpoint, BaseModelType.StableDiffusion1)
    assert sd1.extra_fields == {"prediction_type": SchedulerPredictionType.Epsilon} and sd1.undecided == {}
    for name, base in (
        ("sdxl", BaseModelType.StableDiffusionXL),
        ("sdxl-refiner", BaseModelType.StableDiffusionXLRefiner),
    ):
        probed = probe_model(write_single_file(pipelines[name], tmp_path / f"{name}.safetensors"))
        assert (probed.type, probed.format, probed.base) == (ModelType.Main, ModelFormat.Checkpoint, base)
    # The tiny SD-1 model's text width is no real base's.
    tiny = probe_model(write_single_file(pipelines["sd-1"], tmp_path / "tiny.safetensors"))
    assert tiny.base is None and "cross-attention width is 32" in tiny.unknown_base_reason


def test_an_sd2_single_file_leaves_its_prediction_type_undecided(tmp_path: Path) -> None:
    probed = probe_model(write_checkpoint(tmp_path / "sd2.safetensors", text_width=1024))
    assert probed.base == BaseModelType.StableDiffusion2
    assert "prediction_type" not in probed.extra_fields
    assert "the same tensors" in probed.undecided["prediction_type"]


def test_a_vae_file_probes_as_a_vae_of_unknown_base(tiny_sd_model: Path, tmp_path: Path) -> None:
    probed = probe_model(write_vae_file(tiny_sd_model / "vae", tmp_path / "vae.safetensors"))
    assert (probed.type, probed.format, probed.base) == (ModelType.VAE, ModelFormat.Checkpoint, None)
    assert "cannot tell them apart" in probed.unknown_base_reason
