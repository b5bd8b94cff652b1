"""What a source string names, and which files of a Hugging Face repo make the model it asks for."""

from __future__ import annotations

import pytest

from nodeloom.app.services.model_install.model_install_common import (
    HFModelSource,
    LocalModelSource,
    ModelRepoVariant,
    RelativeModelPathError,
    UnsupportedModelSourceError,
    URLModelSource,
    parse_source,
)
from nodeloom.app.services.model_install.model_install_download import file_name
from nodeloom.app.services.model_install.model_install_hf import select_files


def test_source_strings_name_paths_urls_and_repos_as_invokeai_writes_them() -> None:
    assert parse_source("/models/ink.safetensors", inplace=False) == LocalModelSource(
        path="/models/ink.safetensors", inplace=False
    )
    assert parse_source("HTTPS://example.com/a.safetensors?x=1", True) == URLModelSource(
        url="HTTPS://example.com/a.safetensors?x=1"
    )
    fp16 = ModelRepoVariant.FP16
    cases = {
        "owner/name": HFModelSource(repo_id="owner/name"),
        "owner/name.v1-5": HFModelSource(repo_id="owner/name.v1-5"),
        "owner/name:fp16": HFModelSource(repo_id="owner/name", variant=fp16),
        "owner/name:fp16:vae": HFModelSource(repo_id="owner/name", variant=fp16, subfolder="vae"),
        "owner/name::vae": HFModelSource(repo_id="owner/name", subfolder="vae"),
        "owner/name:vae": HFModelSource(repo_id="owner/name", subfolder="vae"),
        "owner/name::unet/model.safetensors": HFModelSource(repo_id="owner/name", subfolder="unet/model.safetensors"),
    }
    for text, source in cases.items():
        assert parse_source(text, True) == source, text
    assert str(cases["owner/name:fp16:vae"]) == "owner/name:fp16:vae" and str(cases["owner/name:vae"]) == (
        "owner/name::vae"
    )
    for relative in ("models/ink.safetensors", "./ink", "a/b/c", "~/ink.safetensors"):
        with pytest.raises(RelativeModelPathError, match="is a relative path"):
            parse_source(relative, True)
    for nonsense in ("ink", "owner/name:fp16:vae:extra", ""):
        with pytest.raises(UnsupportedModelSourceError, match="is no model source"):
            parse_source(nonsense, True)


def test_a_repo_gives_one_set_of_weights_per_folder_and_its_configs() -> None:
    files = [
        "README.md",
        "model_index.json",
        "v1-5-pruned.safetensors",
        "unet/config.json",
        "unet/diffusion_pytorch_model.bin",
        "unet/diffusion_pytorch_model.safetensors",
        "unet/diffusion_pytorch_model.fp16.safetensors",
        "text_encoder/model.fp16-00001-of-00002.safetensors",
        "text_encoder/model.fp16-00002-of-00002.safetensors",
        "text_encoder/model.safetensors",
        "tokenizer/vocab.json",
        "tokenizer/merges.txt",
        "vae/diffusion_pytorch_model.bin",
        "vae/config.json",
        "onnx/model.onnx",
    ]
    plain = select_files(files, None, None)
    assert plain == [
        "model_index.json",
        "text_encoder/model.safetensors",
        "tokenizer/merges.txt",
        "tokenizer/vocab.json",
        "unet/config.json",
        "unet/diffusion_pytorch_model.safetensors",
        "vae/config.json",
        "vae/diffusion_pytorch_model.bin",
    ]
    fp16 = select_files(files, ModelRepoVariant.FP16, None)
    assert [file for file in fp16 if file not in plain] == [
        "text_encoder/model.fp16-00001-of-00002.safetensors",
        "text_encoder/model.fp16-00002-of-00002.safetensors",
        "unet/diffusion_pytorch_model.fp16.safetensors",
    ]
    assert select_files(files, ModelRepoVariant.FP16, "unet") == [
        "unet/config.json",
        "unet/diffusion_pytorch_model.fp16.safetensors",
    ]
    assert select_files(files, None, "v1-5-pruned.safetensors") == ["v1-5-pruned.safetensors"]
    assert select_files(files, None, "missing") == []


def test_a_url_file_is_saved_under_the_last_part_of_its_path() -> None:
    assert file_name("https://example.com/a/Ink%20v2.safetensors?download=true") == "Ink v2.safetensors"
    assert file_name("https://example.com/") == "model"
    assert file_name("https://example.com/a/..") == "model"
    assert file_name("https://example.com/..%2F..%2Fetc%2Fcron.d%2Fx") == "x"
    assert file_name("https://example.com/a%5C..%5Cb.safetensors") == "b.safetensors"
