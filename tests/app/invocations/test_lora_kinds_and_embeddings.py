"""LyCORIS LoRAs and textual-inversion embeddings through the nodes, on the tiny SD-1 and SDXL models installed in
real services: a LoHa, a LoKr and a collection of both change the image and leave the cached models as they were;
`<name>` in a prompt gives diffusers' `load_textual_inversion` embeddings, an unknown name stays text, and an
embedding for another base is refused."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from tests.diffusion_helpers import NOISE_SIZE, PROMPT, SEED, NodeRunner, filter_diffusers_numpy, load_pipeline
from tests.tiny_model import TINY_SD1_LORA_LAYERS, TINY_SDXL_LORA_LAYERS, lora_tensors

from nodeloom.app.invocations.compel import (
    CompelInvocation,
    SDXLCompelPromptInvocation,
    SDXLRefinerCompelPromptInvocation,
    WrongEmbeddingBaseError,
)
from nodeloom.app.invocations.denoise_latents import DenoiseLatentsInvocation
from nodeloom.app.invocations.fields import ModelIdentifierField
from nodeloom.app.invocations.latents import LatentsToImageInvocation
from nodeloom.app.invocations.model import (
    CLIPField,
    LoRACollectionLoader,
    LoRAField,
    LoRALoaderInvocation,
    MainModelLoaderInvocation,
    ModelLoaderOutput,
    UNetField,
    VAEField,
)
from nodeloom.app.invocations.noise import NoiseInvocation
from nodeloom.app.invocations.sdxl import (
    SDXLLoRACollectionLoader,
    SDXLLoRALoaderInvocation,
    SDXLModelLoaderInvocation,
    SDXLModelLoaderOutput,
    SDXLRefinerModelLoaderInvocation,
)
from nodeloom.app.services.model_records.model_records_common import ModelRecordChanges
from nodeloom.backend.model_manager.taxonomy import BaseModelType, ModelFormat

pytestmark = filter_diffusers_numpy

STEPS = 3
NEGATIVE = "bad"


@pytest.fixture(scope="module")
def sd1(tmp_path_factory: pytest.TempPathFactory, tiny_sd_model: Path) -> Iterator[NodeRunner]:
    runner = NodeRunner.start(tmp_path_factory.mktemp("sd1-root"), tiny_sd_model)
    yield runner
    runner.close()


@pytest.fixture(scope="module")
def sdxl(tmp_path_factory: pytest.TempPathFactory, tiny_sdxl_models: tuple[Path, Path]) -> Iterator[NodeRunner]:
    runner = NodeRunner.start(tmp_path_factory.mktemp("sdxl-root"), tiny_sdxl_models[0], base=None)
    yield runner
    runner.close()


def install(runner: NodeRunner, file_name: str, tensors: dict[str, torch.Tensor], base: BaseModelType | None) -> Any:
    """Saves the tensors in the models folder and installs them, named after the file."""
    settings = runner.services.config
    path = settings.resolve(settings.models_dir) / file_name
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, path)
    config = runner.services.model_manager.install.install_path(path, ModelRecordChanges(base=base))
    return ModelIdentifierField.from_config(config)


def conditioning(
    runner: NodeRunner, node: CompelInvocation | SDXLCompelPromptInvocation | SDXLRefinerCompelPromptInvocation
) -> dict[str, torch.Tensor]:
    stored: dict[str, torch.Tensor] = runner.services.conditioning.load(runner.run(node).conditioning.conditioning_name)
    return stored


def image(runner: NodeRunner, unet: UNetField, prompts: tuple[Any, Any], vae: VAEField) -> np.ndarray[Any, Any]:
    """The pixels of a text-to-image run: the prompt nodes given, noise at `SEED`, denoise_latents and l2i."""
    positive, negative = (runner.run(node).conditioning for node in prompts)
    noise = runner.run(NoiseInvocation(seed=SEED, width=NOISE_SIZE, height=NOISE_SIZE)).noise
    latents = runner.run(
        DenoiseLatentsInvocation(
            positive_conditioning=positive, negative_conditioning=negative, noise=noise, unet=unet, steps=STEPS
        )
    ).latents
    output = runner.run(LatentsToImageInvocation(latents=latents, vae=vae))
    return np.asarray(runner.services.images.get_pil_image(output.image.image_name).convert("RGB"))


def sd1_image(runner: NodeRunner, unet: UNetField, clip: CLIPField, vae: VAEField) -> np.ndarray[Any, Any]:
    return image(
        runner, unet, (CompelInvocation(prompt=PROMPT, clip=clip), CompelInvocation(prompt=NEGATIVE, clip=clip)), vae
    )


def test_a_loha_a_lokr_and_both_change_the_sd1_image_only_while_applied(sd1: NodeRunner) -> None:
    loaded = sd1.run(MainModelLoaderInvocation(model=sd1.model))
    assert isinstance(loaded, ModelLoaderOutput)
    loha = install(sd1, "loha.safetensors", lora_tensors("loha", TINY_SD1_LORA_LAYERS), BaseModelType.StableDiffusion1)
    lokr = install(sd1, "lokr.safetensors", lora_tensors("lokr", TINY_SD1_LORA_LAYERS), BaseModelType.StableDiffusion1)
    plain = sd1_image(sd1, loaded.unet, loaded.clip, loaded.vae)

    with_loha = sd1.run(LoRALoaderInvocation(lora=loha, weight=0.8, unet=loaded.unet, clip=loaded.clip))
    loha_image = sd1_image(sd1, with_loha.unet, with_loha.clip, loaded.vae)
    both = [LoRAField(lora=loha, weight=0.8), LoRAField(lora=lokr, weight=0.5)]
    with_both = sd1.run(LoRACollectionLoader(loras=both, unet=loaded.unet, clip=loaded.clip))
    both_image = sd1_image(sd1, with_both.unet, with_both.clip, loaded.vae)

    assert not np.array_equal(loha_image, plain)
    assert not np.array_equal(both_image, plain) and not np.array_equal(both_image, loha_image)
    assert np.array_equal(sd1_image(sd1, loaded.unet, loaded.clip, loaded.vae), plain)


def test_an_sdxl_lokr_and_a_collection_change_the_image_only_while_applied(sdxl: NodeRunner) -> None:
    loaded = sdxl.run(SDXLModelLoaderInvocation(model=sdxl.model))
    assert isinstance(loaded, SDXLModelLoaderOutput)
    lokr = install(sdxl, "xl-lokr.safetensors", lora_tensors("lokr", TINY_SDXL_LORA_LAYERS), None)
    peft = install(sdxl, "xl-peft.safetensors", lora_tensors("peft", TINY_SDXL_LORA_LAYERS), None)
    assert lokr.base == peft.base == BaseModelType.StableDiffusionXL

    def sdxl_image(unet: UNetField, clip: CLIPField, clip2: CLIPField) -> np.ndarray[Any, Any]:
        positive = SDXLCompelPromptInvocation(prompt=PROMPT, clip=clip, clip2=clip2)
        return image(sdxl, unet, (positive, positive.model_copy(update={"prompt": NEGATIVE})), loaded.vae)

    plain = sdxl_image(loaded.unet, loaded.clip, loaded.clip2)
    patched = sdxl.run(
        SDXLLoRALoaderInvocation(lora=lokr, weight=0.7, unet=loaded.unet, clip=loaded.clip, clip2=loaded.clip2)
    )
    lokr_image = sdxl_image(patched.unet, patched.clip, patched.clip2)
    both = [LoRAField(lora=lokr, weight=0.7), LoRAField(lora=peft, weight=0.4), LoRAField(lora=lokr, weight=0.1)]
    collected = sdxl.run(SDXLLoRACollectionLoader(loras=both, unet=loaded.unet, clip=loaded.clip, clip2=loaded.clip2))
    for field in (collected.unet, collected.clip, collected.clip2):
        assert [(applied.lora.key, applied.weight) for applied in field.loras] == [(lokr.key, 0.7), (peft.key, 0.4)]
    both_image = sdxl_image(collected.unet, collected.clip, collected.clip2)

    assert not np.array_equal(lokr_image, plain)
    assert not np.array_equal(both_image, plain) and not np.array_equal(both_image, lokr_image)
    assert np.array_equal(sdxl_image(loaded.unet, loaded.clip, loaded.clip2), plain)


def embedding_vectors(seed: int) -> torch.Tensor:
    return torch.randn((2, 32), generator=torch.Generator().manual_seed(seed))


def test_an_sd1_embedding_in_a_prompt_gives_diffusers_embeddings(sd1: NodeRunner, tiny_sd_model: Path) -> None:
    ink = embedding_vectors(0)
    reference = load_pipeline(tiny_sd_model)
    # As diffusers saves a trained embedding: a folder, named after it, with a learned_embeds.bin.
    settings = sd1.services.config
    folder = settings.resolve(settings.models_dir) / "ink-style"
    folder.mkdir(parents=True)
    torch.save({"<ink-style>": ink}, folder / "learned_embeds.bin")
    config = sd1.services.model_manager.install.install_path(
        folder, ModelRecordChanges(base=BaseModelType.StableDiffusion1)
    )
    assert (config.name, config.format) == ("ink-style", ModelFormat.EmbeddingFolder)
    reference.load_textual_inversion({"<ink-style>": ink}, token="<ink-style>")
    clip = sd1.run(MainModelLoaderInvocation(model=sd1.model)).clip

    def embeds(prompt: str) -> torch.Tensor:
        return conditioning(sd1, CompelInvocation(prompt=prompt, clip=clip))["embeds"]

    plain = embeds(PROMPT)
    assert torch.equal(embeds("a <ink-style> cab"), reference.encode_prompt("a <ink-style> cab", "cpu", 1, False)[0])
    # A name no embedding has is text, as the tokenizer reads it.
    assert torch.equal(embeds("a <no-such> cab"), reference.encode_prompt("a <no-such> cab", "cpu", 1, False)[0])
    assert torch.equal(embeds(PROMPT), plain)


def test_an_sdxl_embedding_gives_each_text_encoder_its_part(
    sdxl: NodeRunner, tiny_sdxl_models: tuple[Path, Path]
) -> None:
    from diffusers.pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl import StableDiffusionXLPipeline
    from diffusers.pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl_img2img import (
        StableDiffusionXLImg2ImgPipeline,
    )

    parts = {"clip_l": embedding_vectors(1), "clip_g": embedding_vectors(2)}
    assert install(sdxl, "xl-ink.safetensors", parts, None).base == BaseModelType.StableDiffusionXL

    def reference_embeddings(pipeline: Any, encoders: dict[str, str]) -> tuple[torch.Tensor, torch.Tensor]:
        """diffusers' prompt and pooled embeddings of the prompt, each encoder given its part of the embedding."""
        for encoder, part in encoders.items():
            tokenizer = getattr(pipeline, encoder.replace("text_encoder", "tokenizer"))
            vectors = {"<xl-ink>": parts[part]}
            pipeline.load_textual_inversion(
                vectors, token="<xl-ink>", text_encoder=getattr(pipeline, encoder), tokenizer=tokenizer
            )
        embeds, _, pooled, _ = pipeline.encode_prompt(
            "a <xl-ink> cab", device=torch.device("cpu"), do_classifier_free_guidance=False
        )
        return embeds, pooled

    reference = StableDiffusionXLPipeline.from_pretrained(tiny_sdxl_models[0], local_files_only=True)
    embeds, pooled = reference_embeddings(reference, {"text_encoder": "clip_l", "text_encoder_2": "clip_g"})
    loaded = sdxl.run(SDXLModelLoaderInvocation(model=sdxl.model))
    stored = conditioning(
        sdxl, SDXLCompelPromptInvocation(prompt="a <xl-ink> cab", clip=loaded.clip, clip2=loaded.clip2)
    )
    assert torch.equal(stored["embeds"], embeds)
    assert torch.equal(stored["pooled_embeds"], pooled)

    # The refiner has SDXL's second text encoder: it takes the embedding's clip_g part.
    refiner_config = sdxl.services.model_manager.install.install_path(tiny_sdxl_models[1], ModelRecordChanges())
    refiner = sdxl.run(SDXLRefinerModelLoaderInvocation(model=ModelIdentifierField.from_config(refiner_config)))
    reference_refiner = StableDiffusionXLImg2ImgPipeline.from_pretrained(tiny_sdxl_models[1], local_files_only=True)
    embeds, pooled = reference_embeddings(reference_refiner, {"text_encoder_2": "clip_g"})
    stored = conditioning(sdxl, SDXLRefinerCompelPromptInvocation(style="a <xl-ink> cab", clip2=refiner.clip2))
    assert torch.equal(stored["embeds"], embeds)
    assert torch.equal(stored["pooled_embeds"], pooled)


def test_an_embedding_for_another_base_is_refused(sd1: NodeRunner, sdxl: NodeRunner) -> None:
    install(sd1, "only-xl.safetensors", {"clip_l": embedding_vectors(3), "clip_g": embedding_vectors(4)}, None)
    clip = sd1.run(MainModelLoaderInvocation(model=sd1.model)).clip
    with pytest.raises(WrongEmbeddingBaseError, match="'only-xl' is for sdxl, and this prompt goes through a sd-1"):
        sd1.run(CompelInvocation(prompt="a <only-xl> cab", clip=clip))
    install(sdxl, "only-sd1.safetensors", {"<only-sd1>": embedding_vectors(5)}, BaseModelType.StableDiffusion1)
    loaded = sdxl.run(SDXLModelLoaderInvocation(model=sdxl.model))
    with pytest.raises(WrongEmbeddingBaseError, match="'only-sd1' is for sd-1, and this prompt goes through a sdxl"):
        sdxl.run(SDXLCompelPromptInvocation(prompt="<only-sd1>", clip=loaded.clip, clip2=loaded.clip2))
