"""The metadata nodes: core_metadata keeps what InvokeAI's UI sends, the metadata_to_* nodes read each value back,
merge_metadata lets the later metadata win, and an image node embeds what it is given."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from tests.app.invocations.conftest import MakeContext
from tests.conftest import StartServices
from tests.diffusion_helpers import NodeRunner
from tests.helpers import edge, graph_json, wait_for

from nodeloom import __version__
from nodeloom.app.invocations.baseinvocation import BaseInvocationOutput, registry
from nodeloom.app.invocations.fields import ModelIdentifierField
from nodeloom.app.invocations.image import ImageOutput
from nodeloom.app.invocations.metadata import (
    CoreMetadataInvocation,
    MergeMetadataInvocation,
    MetadataInvocation,
    MetadataItemField,
    MetadataItemLinkedInvocation,
    MetadataToLorasCollectionInvocation,
    MetadataToLorasInvocation,
    MetadataToModelInvocation,
    MetadataToVAEInvocation,
)
from nodeloom.app.invocations.model import CLIPField, LoRAField, MainModelLoaderInvocation, UNetField, VAEField
from nodeloom.app.services.model_records.model_records_common import ModelRecordChanges, UnknownModelError
from nodeloom.app.services.session_queue.session_queue_common import DEFAULT_QUEUE_ID, Batch, SessionQueueItem
from nodeloom.app.services.shared.graph import Graph
from nodeloom.backend.model_manager.taxonomy import BaseModelType


def run(make_context: MakeContext, data: dict[str, Any]) -> Any:
    node = registry.validate_invocation(data)
    output: BaseInvocationOutput = node.invoke_internal(make_context(node))
    return output


def core_metadata(make_context: MakeContext, **settings: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = run(make_context, {"id": "core", "type": "core_metadata", **settings}).metadata
    return metadata


@pytest.mark.parametrize(
    ("node_type", "label", "value", "default", "output_field"),
    [
        ("metadata_to_string", "positive_prompt", "a cab at dusk", "unused", "value"),
        ("metadata_to_string", "negative_style_prompt", "blurry", "unused", "value"),
        ("metadata_to_integer", "seed", 4_294_967_295, 0, "value"),
        ("metadata_to_integer", "clip_skip", 2, 0, "value"),
        ("metadata_to_float", "cfg_scale", 6.25, 1.0, "value"),
        ("metadata_to_float", "cfg_rescale_multiplier", 0.7, 0.0, "value"),
        ("metadata_to_bool", "seamless_x", True, False, "value"),
        ("metadata_to_bool", "seamless_y", False, True, "value"),
        ("metadata_to_scheduler", "scheduler", "dpmpp_2m_k", "euler", "scheduler"),
    ],
)
def test_each_metadata_to_node_reads_back_what_core_metadata_recorded(
    make_context: MakeContext, node_type: str, label: str, value: Any, default: Any, output_field: str
) -> None:
    metadata = core_metadata(make_context, **{label: value})
    read = run(
        make_context, {"id": "n", "type": node_type, "label": label, "default_value": default, "metadata": metadata}
    )
    assert getattr(read, output_field) == value
    absent = run(make_context, {"id": "n", "type": node_type, "label": label, "default_value": default})
    assert getattr(absent, output_field) == default


def test_a_custom_label_reads_any_key_and_must_be_given(make_context: MakeContext) -> None:
    metadata = core_metadata(make_context, my_setting=12)
    node = {"id": "n", "type": "metadata_to_integer", "label": "* CUSTOM LABEL *", "default_value": 0}
    assert run(make_context, {**node, "custom_label": "my_setting", "metadata": metadata}).value == 12
    with pytest.raises(ValidationError, match="You must enter a Custom Label"):
        registry.validate_invocation({**node, "custom_label": "  "})


def test_core_metadata_keeps_unknown_fields_and_types_the_known_ones(make_context: MakeContext) -> None:
    model = {"key": "k", "hash": "h", "name": "Tiny", "base": "sd-1", "type": "main"}
    sent = {
        "generation_mode": "txt2img",
        "positive_prompt": "a cab",
        "width": 512,
        "model": model,
        "loras": [{"model": {**model, "type": "lora"}, "weight": 0.75}],
        "_canvas_objects": [{"id": "layer"}],
        "ref_images": [],
    }
    metadata = core_metadata(make_context, **sent)
    assert metadata == {**sent, "app_version": __version__}
    with pytest.raises(ValidationError, match="width"):
        registry.validate_invocation({"id": "c", "type": "core_metadata", "width": "wide"})
    with pytest.raises(ValidationError, match="generation_mode"):
        CoreMetadataInvocation.model_validate({"generation_mode": "painting"})


def test_metadata_builds_a_dict_from_items(make_context: MakeContext) -> None:
    item = run(make_context, {"id": "i", "type": "metadata_item", "label": "steps", "value": 30}).item
    assert item == MetadataItemField(label="steps", value=30)
    one = MetadataInvocation(items=item).invoke(make_context(MetadataInvocation(items=item)))
    assert one.metadata == {"steps": 30, "app_version": __version__}
    items = [item, MetadataItemField(label="sampler", value="euler")]
    many = MetadataInvocation(items=items).invoke(make_context(MetadataInvocation(items=items)))
    assert many.metadata == {"steps": 30, "sampler": "euler", "app_version": __version__}


def test_merge_metadata_lets_the_later_metadata_win_a_clash(make_context: MakeContext) -> None:
    first = {"seed": 1, "steps": 10, "positive_prompt": "a cab"}
    second = {"seed": 2, "cfg_scale": 7.5}
    third = {"steps": 30}
    node = MergeMetadataInvocation(collection=[first, second, third])
    merged = node.invoke(make_context(node)).metadata
    assert merged == {"seed": 2, "steps": 30, "positive_prompt": "a cab", "cfg_scale": 7.5}
    assert list(merged) == ["seed", "steps", "positive_prompt", "cfg_scale"]
    assert first == {"seed": 1, "steps": 10, "positive_prompt": "a cab"}


def test_metadata_item_linked_adds_to_the_metadata_it_is_given(make_context: MakeContext) -> None:
    node = MetadataItemLinkedInvocation(label="seed", value=9, metadata={"seed": 1, "steps": 4})
    assert node.invoke(make_context(node)).metadata == {"seed": 9, "steps": 4, "app_version": __version__}


def test_a_graph_merges_metadata_and_the_image_node_embeds_it(start_services: StartServices) -> None:
    services, _ = start_services()
    graph = graph_json(
        [
            {"id": "core", "type": "core_metadata", "seed": 1, "steps": 10, "extra_setting": "kept"},
            {"id": "item", "type": "metadata_item", "label": "seed", "value": 2},
            {"id": "dict", "type": "metadata"},
            {"id": "all", "type": "collect"},
            {"id": "merge", "type": "merge_metadata"},
            {"id": "image", "type": "blank_image", "width": 8, "height": 8},
        ],
        [
            edge("item", "item", "dict", "items"),
            edge("core", "metadata", "all", "item"),
            edge("dict", "metadata", "all", "item"),
            edge("all", "collection", "merge", "collection"),
            edge("merge", "metadata", "image", "metadata"),
        ],
    )
    batch = Batch(graph=Graph.model_validate(graph))
    item_id = services.session_queue.enqueue_batch(DEFAULT_QUEUE_ID, batch, prepend=False).item_ids[0]

    def finished() -> SessionQueueItem | None:
        item = services.session_queue.get_queue_item(item_id)
        return item if item.status in ("completed", "failed") else None

    item = wait_for(finished, what="the session to finish")
    assert item.status == "completed", item.error_traceback
    output = item.session.results[next(iter(item.session.source_prepared_mapping["image"]))]
    assert isinstance(output, ImageOutput)
    image_name = output.image.image_name
    # The collection holds core_metadata's output first: metadata's `seed` wins.
    assert services.images.get_metadata(image_name) == {
        "seed": 2,
        "steps": 10,
        "extra_setting": "kept",
        "app_version": __version__,
    }
    embedded_graph = json.loads(services.images.get_graph(image_name) or "null")
    assert embedded_graph["nodes"]["core"]["extra_setting"] == "kept"


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory, tiny_sd_model: Path) -> Iterator[NodeRunner]:
    runner = NodeRunner.start(tmp_path_factory.mktemp("root"), tiny_sd_model)
    yield runner
    runner.close()


def install_lora(runner: NodeRunner, name: str) -> ModelIdentifierField:
    import torch
    from safetensors.torch import save_file

    settings = runner.services.config
    path = settings.resolve(settings.models_dir) / f"{name}.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    block = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k"
    save_file({f"{block}.lora_down.weight": torch.ones((2, 32)), f"{block}.lora_up.weight": torch.ones((32, 2))}, path)
    config = runner.services.model_manager.install.install_path(
        path, ModelRecordChanges(base=BaseModelType.StableDiffusion1)
    )
    return ModelIdentifierField.from_config(config)


def test_metadata_to_model_and_vae_find_the_recorded_model_by_key_then_by_name(runner: NodeRunner) -> None:
    model = runner.model
    missing = model.model_copy(update={"key": "not-installed", "name": "Nothing"})
    recorded = {"model": model.model_dump(mode="json"), "vae": model.model_dump(mode="json")}
    by_key = runner.run(MetadataToModelInvocation(default_value=missing, metadata=recorded))
    loader = runner.run(MainModelLoaderInvocation(model=model))
    assert (by_key.model, by_key.unet, by_key.clip, by_key.vae) == (model, loader.unet, loader.clip, loader.vae)
    assert by_key.name == f"{model.base}: {model.name}"

    # Installed again elsewhere, a model keeps its name and gets a new key.
    by_name = {"model": {**recorded["model"], "key": "another-servers-key"}}
    assert runner.run(MetadataToModelInvocation(default_value=missing, metadata=by_name)).model == model

    default_vae = VAEField(vae=missing)
    vae = runner.run(MetadataToVAEInvocation(default_value=default_vae, metadata=recorded)).vae
    assert vae == VAEField(vae=model.model_copy(update={"submodel_type": "vae"}))
    with pytest.raises(UnknownModelError, match="not-installed"):
        runner.run(MetadataToVAEInvocation(default_value=default_vae, metadata={}))


def test_metadata_to_loras_and_lora_collection_read_the_recorded_loras(runner: NodeRunner) -> None:
    first, second = install_lora(runner, "lora-one"), install_lora(runner, "lora-two")
    recorded = {
        "loras": [
            {"model": first.model_dump(mode="json"), "weight": 0.5},
            {"model": {**second.model_dump(mode="json"), "key": "gone"}, "weight": 0.25},
            {"model": {"key": "gone", "name": "not installed"}, "weight": 1.0},
        ]
    }
    expected = [LoRAField(lora=first, weight=0.5), LoRAField(lora=second, weight=0.25)]
    loader = runner.run(MainModelLoaderInvocation(model=runner.model))
    unet: UNetField = loader.unet
    clip: CLIPField = loader.clip
    applied = runner.run(MetadataToLorasInvocation(unet=unet, clip=clip, metadata=recorded))
    assert applied.unet.loras == expected and applied.clip.loras == expected
    # A LoRA already applied is not applied twice.
    again = runner.run(MetadataToLorasInvocation(unet=applied.unet, metadata=recorded))
    assert again.unet.loras == expected and again.clip is None

    given = LoRAField(lora=first, weight=0.9)
    collection = runner.run(MetadataToLorasCollectionInvocation(loras=given, metadata=recorded)).lora
    assert collection == [given, expected[1]]


def test_metadata_nodes_have_invokeais_names() -> None:
    for type_, output in {
        "core_metadata": "metadata_output",
        "metadata_item": "metadata_item_output",
        "metadata": "metadata_output",
        "merge_metadata": "metadata_output",
        "metadata_item_linked": "metadata_output",
        "metadata_from_image": "metadata_output",
        "metadata_to_string": "string_output",
        "metadata_to_integer": "integer_output",
        "metadata_to_float": "float_output",
        "metadata_to_bool": "boolean_output",
        "metadata_to_scheduler": "scheduler_output",
        "metadata_to_model": "metadata_to_model_output",
        "metadata_to_vae": "vae_output",
        "metadata_to_loras": "lora_loader_output",
        "metadata_to_lora_collection": "metadata_to_lora_collection_output",
    }.items():
        assert registry.get_invocation(type_).output_class().output_type == output
