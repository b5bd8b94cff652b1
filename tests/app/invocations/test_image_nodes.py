from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image, ImageChops, ImageFilter
from tests.app.services.image_stack import ImageStack, open_image_stack

from nodeloom.app.invocations.baseinvocation import BaseInvocation, BaseInvocationOutput, MissingInputError, registry
from nodeloom.app.invocations.fields import BoardField, ColorField, ImageField
from nodeloom.app.invocations.image import (
    BlankImageInvocation,
    ImageBlurInvocation,
    ImageChannelInvocation,
    ImageChannelMultiplyInvocation,
    ImageChannelOffsetInvocation,
    ImageCollectionInvocation,
    ImageCollectionOutput,
    ImageConvertInvocation,
    ImageCropInvocation,
    ImageInverseLerpInvocation,
    ImageInvocation,
    ImageLerpInvocation,
    ImageMultiplyInvocation,
    ImageOutput,
    ImagePasteInvocation,
    ImageResizeInvocation,
    ImageScaleInvocation,
    InfillTileInvocation,
    MaskFromAlphaInvocation,
    SaveImageInvocation,
)
from nodeloom.app.services.image_records.image_records_common import ImageCategory, ResourceOrigin
from nodeloom.app.services.object_serializer.object_serializer_disk import ObjectSerializerDisk
from nodeloom.app.services.object_serializer.object_serializer_forward_cache import ObjectSerializerForwardCache
from nodeloom.app.services.shared.invocation_context import InvocationContext, InvocationContextData
from nodeloom.app.services.shared.invocation_context_stores import (
    BoardsInterface,
    ConditioningInterface,
    ContextStores,
    ImagesInterface,
    TensorsInterface,
)

GRAPH_JSON = json.dumps({"id": "graph-1", "nodes": {}, "edges": []})
WORKFLOW_JSON = json.dumps({"name": "a workflow"})


class Nodes:
    """Runs nodes against the real image services and reads back what they made."""

    def __init__(self, stack: ImageStack) -> None:
        self.stack = stack

    def run(self, node: BaseInvocation) -> Any:
        data = InvocationContextData(invocation=node, source_invocation_id=node.id, session_id="session-1")
        context = InvocationContext(
            data=data,
            stores=ContextStores(
                images=ImagesInterface(self.stack.images, data, lambda: GRAPH_JSON, WORKFLOW_JSON),
                boards=BoardsInterface(self.stack.boards),
                tensors=TensorsInterface(ObjectSerializerDisk(self.stack.root / "tensors", "tensor")),
                conditioning=ConditioningInterface(ObjectSerializerDisk(self.stack.root / "cond", "conditioning")),
            ),
        )
        return node.invoke_internal(context)

    def add(self, image: Image.Image) -> ImageField:
        dto = self.stack.images.create(image, ResourceOrigin.EXTERNAL, ImageCategory.USER)
        return ImageField(image_name=dto.image_name)

    def result(self, output: BaseInvocationOutput) -> Image.Image:
        assert isinstance(output, ImageOutput)
        image = self.stack.images.get_pil_image(output.image.image_name)
        assert (output.width, output.height) == image.size
        return image


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[Nodes]:
    with open_image_stack(tmp_path) as stack:
        yield Nodes(stack)


def image_of(mode: str, size: tuple[int, int], pixel: Callable[[int, int], Any]) -> Image.Image:
    image = Image.new(mode, size)
    for y in range(size[1]):
        for x in range(size[0]):
            image.putpixel((x, y), pixel(x, y))
    return image


def pixels(image: Image.Image) -> list[list[Any]]:
    return [[image.getpixel((x, y)) for x in range(image.width)] for y in range(image.height)]


def same(a: Image.Image, b: Image.Image) -> bool:
    return a.mode == b.mode and a.size == b.size and ImageChops.difference(a, b).getbbox() is None


def gradient(mode: str = "RGBA", size: tuple[int, int] = (4, 4)) -> Image.Image:
    rgba = image_of("RGBA", size, lambda x, y: (x * 60, y * 60, (x + y) * 30, 255 - x * 20))
    return rgba.convert(mode)


NAME = "0b5b2c2e-3f4a-4b6c-8d7e-9f0a1b2c3d4e.png"
IMAGE = {"image_name": NAME}
IMAGE_OUTPUT = ("image_output", {"image", "width", "height"})
BOARD_AND_METADATA = {"board": None, "metadata": None}
# Each node type: its inputs with defaults (as JSON), its required inputs with a value, its output.
INVOKEAI_IMAGE_NODES: list[tuple[str, dict[str, Any], dict[str, Any], tuple[str, set[str]]]] = [
    ("image", {}, {"image": IMAGE}, IMAGE_OUTPUT),
    ("image_collection", {}, {"collection": [IMAGE, IMAGE]}, ("image_collection_output", {"collection"})),
    ("save_image", BOARD_AND_METADATA, {"image": IMAGE}, IMAGE_OUTPUT),
    (
        "blank_image",
        {**BOARD_AND_METADATA, "width": 512, "height": 512, "mode": "RGB", "color": {"r": 0, "g": 0, "b": 0, "a": 255}},
        {},
        IMAGE_OUTPUT,
    ),
    ("img_crop", {**BOARD_AND_METADATA, "x": 0, "y": 0, "width": 512, "height": 512}, {"image": IMAGE}, IMAGE_OUTPUT),
    (
        "img_paste",
        {**BOARD_AND_METADATA, "mask": None, "x": 0, "y": 0, "crop": False},
        {"base_image": IMAGE, "image": IMAGE},
        IMAGE_OUTPUT,
    ),
    ("tomask", {**BOARD_AND_METADATA, "invert": False}, {"image": IMAGE}, IMAGE_OUTPUT),
    ("img_mul", BOARD_AND_METADATA, {"image1": IMAGE, "image2": IMAGE}, IMAGE_OUTPUT),
    ("img_chan", {**BOARD_AND_METADATA, "channel": "A"}, {"image": IMAGE}, IMAGE_OUTPUT),
    ("img_conv", {**BOARD_AND_METADATA, "mode": "L"}, {"image": IMAGE}, IMAGE_OUTPUT),
    ("img_blur", {**BOARD_AND_METADATA, "radius": 8.0, "blur_type": "gaussian"}, {"image": IMAGE}, IMAGE_OUTPUT),
    (
        "img_resize",
        {**BOARD_AND_METADATA, "width": 512, "height": 512, "resample_mode": "bicubic"},
        {"image": IMAGE},
        IMAGE_OUTPUT,
    ),
    (
        "img_scale",
        {**BOARD_AND_METADATA, "scale_factor": 2.0, "resample_mode": "bicubic"},
        {"image": IMAGE},
        IMAGE_OUTPUT,
    ),
    ("img_lerp", {**BOARD_AND_METADATA, "min": 0, "max": 255}, {"image": IMAGE}, IMAGE_OUTPUT),
    ("img_ilerp", {**BOARD_AND_METADATA, "min": 0, "max": 255}, {"image": IMAGE}, IMAGE_OUTPUT),
    (
        "img_channel_offset",
        {**BOARD_AND_METADATA, "offset": 0},
        {"image": IMAGE, "channel": "Red (RGBA)"},
        IMAGE_OUTPUT,
    ),
    (
        "img_channel_multiply",
        {**BOARD_AND_METADATA, "scale": 1.0, "invert_channel": False},
        {"image": IMAGE, "channel": "Hue (HSV)"},
        IMAGE_OUTPUT,
    ),
    ("infill_tile", {**BOARD_AND_METADATA, "tile_size": 32, "seed": 0}, {"image": IMAGE}, IMAGE_OUTPUT),
]


@pytest.mark.parametrize("spec", INVOKEAI_IMAGE_NODES, ids=lambda spec: spec[0])
def test_image_node_matches_invokeai(spec: tuple[str, dict[str, Any], dict[str, Any], tuple[str, set[str]]]) -> None:
    type_, defaults, required, (output_type, output_fields) = spec
    cls = registry.get_invocation(type_)
    assert set(cls.inputs()) == set(defaults) | set(required)
    assert {name for name, info in cls.inputs().items() if info.required} == set(required)

    bare = registry.validate_invocation({"id": "bare", "type": type_})
    assert {name: value for name, value in bare.model_dump(mode="json").items() if name in defaults} == defaults
    if required:
        with pytest.raises(MissingInputError):
            bare.check_required_inputs()

    shaped = {"id": f"{type_}-1", "type": type_, "is_intermediate": True, "use_cache": False, **defaults, **required}
    node = registry.validate_invocation(shaped)
    assert node.model_dump(mode="json") == shaped
    assert registry.validate_invocation(json.loads(node.model_dump_json())) == node

    output = cls.output_class()
    assert (output.output_type, set(output.output_fields())) == (output_type, output_fields)


def test_save_image_is_never_cached() -> None:
    assert SaveImageInvocation().use_cache is False


def test_image_loads_an_existing_image(nodes: Nodes) -> None:
    field = nodes.add(gradient(size=(5, 3)))
    output = nodes.run(ImageInvocation(image=field))
    assert (output.image, output.width, output.height) == (field, 5, 3)
    assert len(nodes.stack.image_records.get_all_names()) == 1


def test_image_collection_passes_the_images_on(nodes: Nodes) -> None:
    fields = [nodes.add(gradient()), nodes.add(gradient("RGB"))]
    output = nodes.run(ImageCollectionInvocation(collection=fields))
    assert isinstance(output, ImageCollectionOutput)
    assert output.collection == fields


def test_save_image_stores_a_copy_on_the_nodes_board_with_its_metadata(nodes: Nodes) -> None:
    board = nodes.stack.boards.create("Saved").board_id
    field = nodes.add(gradient())
    node = SaveImageInvocation(id="save-1", image=field, board=BoardField(board_id=board), metadata={"prompt": "a fox"})
    output = nodes.run(node)
    assert output.image != field
    assert same(nodes.result(output), nodes.stack.images.get_pil_image(field.image_name))
    dto = nodes.stack.images.get_dto(output.image.image_name)
    assert (dto.board_id, dto.is_intermediate, dto.session_id, dto.node_id) == (board, False, "session-1", "save-1")
    assert (dto.image_origin, dto.image_category, dto.has_workflow) == ("internal", "general", True)
    assert nodes.stack.images.get_metadata(dto.image_name) == {"prompt": "a fox"}
    assert nodes.stack.images.get_graph(dto.image_name) == GRAPH_JSON
    assert nodes.stack.images.get_workflow(dto.image_name) == WORKFLOW_JSON


def test_blank_image(nodes: Nodes) -> None:
    rgba = nodes.result(
        nodes.run(BlankImageInvocation(width=3, height=2, mode="RGBA", color=ColorField(r=1, g=2, b=3, a=4)))
    )
    assert pixels(rgba) == [[(1, 2, 3, 4)] * 3] * 2
    rgb = nodes.result(nodes.run(BlankImageInvocation(width=2, height=1, color=ColorField(r=9, g=8, b=7, a=0))))
    assert pixels(rgb) == [[(9, 8, 7)] * 2]


def test_crop_reaching_outside_the_image_is_transparent(nodes: Nodes) -> None:
    source = gradient()
    cropped = nodes.result(nodes.run(ImageCropInvocation(image=nodes.add(source), x=1, y=2, width=4, height=3)))
    assert cropped.mode == "RGBA"
    expected = [
        [source.getpixel((x + 1, y + 2)) if x + 1 < 4 and y + 2 < 4 else (0, 0, 0, 0) for x in range(4)]
        for y in range(3)
    ]
    assert pixels(cropped) == expected
    before = nodes.result(nodes.run(ImageCropInvocation(image=nodes.add(source), x=-1, y=0, width=2, height=1)))
    assert pixels(before) == [[(0, 0, 0, 0), source.getpixel((0, 0))]]


RED, BLUE, CLEAR = (255, 0, 0, 255), (0, 0, 255, 255), (0, 0, 0, 0)


def test_paste_grows_the_canvas(nodes: Nodes) -> None:
    base = nodes.add(Image.new("RGBA", (3, 3), RED))
    blue = nodes.add(Image.new("RGBA", (2, 2), BLUE))
    grown = nodes.result(nodes.run(ImagePasteInvocation(base_image=base, image=blue, x=2, y=-1)))
    assert pixels(grown) == [
        [CLEAR, CLEAR, BLUE, BLUE],
        [RED, RED, BLUE, BLUE],
        [RED, RED, RED, CLEAR],
        [RED, RED, RED, CLEAR],
    ]
    cropped = nodes.result(nodes.run(ImagePasteInvocation(base_image=base, image=blue, x=2, y=-1, crop=True)))
    assert pixels(cropped) == [[RED, RED, BLUE], [RED, RED, RED], [RED, RED, RED]]


def test_paste_through_a_mask_pastes_where_the_mask_is_dark(nodes: Nodes) -> None:
    base = nodes.add(Image.new("RGB", (3, 2), RED[:3]))
    blue = nodes.add(Image.new("RGB", (2, 2), BLUE[:3]))
    mask = nodes.add(image_of("L", (2, 2), lambda x, y: 0 if x == 0 else 255))
    pasted = nodes.result(nodes.run(ImagePasteInvocation(base_image=base, image=blue, mask=mask, x=1, y=0)))
    assert pixels(pasted) == [[RED, BLUE, RED]] * 2


def test_mask_from_alpha(nodes: Nodes) -> None:
    source = gradient()
    output = nodes.run(MaskFromAlphaInvocation(image=nodes.add(source)))
    mask = nodes.result(output)
    assert mask.mode == "L"
    assert pixels(mask) == [[255 - x * 20 for x in range(4)]] * 4
    assert nodes.stack.images.get_dto(output.image.image_name).image_category == ImageCategory.MASK
    inverted = nodes.result(nodes.run(MaskFromAlphaInvocation(image=nodes.add(source), invert=True)))
    assert pixels(inverted) == [[x * 20 for x in range(4)]] * 4
    opaque = nodes.result(nodes.run(MaskFromAlphaInvocation(image=nodes.add(gradient("RGB")))))
    assert pixels(opaque) == [[255] * 4] * 4


def test_multiply(nodes: Nodes) -> None:
    first = nodes.add(Image.new("L", (2, 1), 200))
    second = nodes.add(image_of("L", (2, 1), lambda x, y: (100, 255)[x]))
    assert pixels(nodes.result(nodes.run(ImageMultiplyInvocation(image1=first, image2=second)))) == [[78, 200]]
    rgb = nodes.add(Image.new("RGB", (2, 1), (255, 128, 0)))
    multiplied = nodes.result(nodes.run(ImageMultiplyInvocation(image1=rgb, image2=second)))
    assert pixels(multiplied) == [[(100, 50, 0), (255, 128, 0)]]
    with pytest.raises(ValueError, match="same size"):
        nodes.run(ImageMultiplyInvocation(image1=first, image2=nodes.add(Image.new("L", (3, 1)))))


def test_extract_channel(nodes: Nodes) -> None:
    source = gradient()
    red = nodes.result(nodes.run(ImageChannelInvocation(image=nodes.add(source), channel="R")))
    assert pixels(red) == [[x * 60 for x in range(4)]] * 4
    alpha_of_rgb = nodes.result(nodes.run(ImageChannelInvocation(image=nodes.add(gradient("RGB")), channel="A")))
    assert pixels(alpha_of_rgb) == [[255] * 4] * 4


def test_convert(nodes: Nodes) -> None:
    source = gradient("RGB")
    grey = nodes.result(nodes.run(ImageConvertInvocation(image=nodes.add(source))))
    assert same(grey, source.convert("L"))
    cmyk = nodes.result(nodes.run(ImageConvertInvocation(image=nodes.add(source), mode="CMYK")))
    assert same(cmyk, source.convert("CMYK").convert("RGB"))


@pytest.mark.parametrize(
    ("blur_type", "expected"), [("gaussian", ImageFilter.GaussianBlur), ("box", ImageFilter.BoxBlur)]
)
def test_blur(nodes: Nodes, blur_type: Any, expected: Callable[[float], ImageFilter.Filter]) -> None:
    source = gradient("RGB", (8, 8))
    blurred = nodes.result(nodes.run(ImageBlurInvocation(image=nodes.add(source), radius=1.5, blur_type=blur_type)))
    assert same(blurred, source.filter(expected(1.5)))
    assert not same(blurred, source)


def test_resize(nodes: Nodes) -> None:
    source = gradient()
    resized = nodes.result(
        nodes.run(ImageResizeInvocation(image=nodes.add(source), width=8, height=2, resample_mode="nearest"))
    )
    assert pixels(resized) == [[source.getpixel((x // 2, y * 2 + 1)) for x in range(8)] for y in range(2)]
    bicubic = nodes.result(nodes.run(ImageResizeInvocation(image=nodes.add(source), width=6, height=6)))
    assert same(bicubic, source.resize((6, 6), Image.Resampling.BICUBIC))


def test_scale(nodes: Nodes) -> None:
    source = gradient(size=(3, 2))
    doubled = nodes.result(nodes.run(ImageScaleInvocation(image=nodes.add(source), resample_mode="nearest")))
    assert pixels(doubled) == [[source.getpixel((x // 2, y // 2)) for x in range(6)] for y in range(4)]
    tiny = nodes.result(nodes.run(ImageScaleInvocation(image=nodes.add(source), scale_factor=0.1)))
    assert tiny.size == (1, 1)


VALUES = image_of("L", (6, 1), lambda x, y: (0, 51, 60, 75, 128, 255)[x])


def test_lerp(nodes: Nodes) -> None:
    lerped = nodes.result(nodes.run(ImageLerpInvocation(image=nodes.add(VALUES), min=50, max=100)))
    # v / 255 * 50 + 50, truncated: 51 -> 60, 60 -> 61.76, 75 -> 64.7, 128 -> 75.1
    assert pixels(lerped) == [[50, 60, 61, 64, 75, 100]]
    rgba = nodes.result(
        nodes.run(ImageLerpInvocation(image=nodes.add(Image.new("RGBA", (1, 1), (0, 255, 51, 255))), min=10, max=20))
    )
    assert pixels(rgba) == [[(10, 20, 12, 20)]]


def test_inverse_lerp(nodes: Nodes) -> None:
    ilerped = nodes.result(nodes.run(ImageInverseLerpInvocation(image=nodes.add(VALUES), min=50, max=100)))
    # (v - 50) / 50 * 255 clamped: 51 -> 5.1, 60 -> 51, 75 -> 127.5, 128 -> 255
    assert pixels(ilerped) == [[0, 5, 51, 127, 255, 255]]
    step = nodes.result(nodes.run(ImageInverseLerpInvocation(image=nodes.add(VALUES), min=60, max=60)))
    assert pixels(step) == [[0, 0, 0, 255, 255, 255]]
    palette = nodes.result(nodes.run(ImageInverseLerpInvocation(image=nodes.add(VALUES.convert("P")))))
    assert palette.mode == "RGB"
    assert pixels(palette) == [[(v, v, v) for v in (0, 51, 60, 75, 128, 255)]]


def test_channel_offset(nodes: Nodes) -> None:
    field = nodes.add(Image.new("RGBA", (2, 1), (10, 20, 30, 40)))
    red = nodes.result(nodes.run(ImageChannelOffsetInvocation(image=field, channel="Red (RGBA)", offset=250)))
    assert pixels(red) == [[(255, 20, 30, 40)] * 2]
    alpha = nodes.result(nodes.run(ImageChannelOffsetInvocation(image=field, channel="Alpha (RGBA)", offset=-50)))
    assert pixels(alpha) == [[(10, 20, 30, 0)] * 2]
    source = gradient("RGB")
    value = nodes.result(
        nodes.run(ImageChannelOffsetInvocation(image=nodes.add(source), channel="Value (HSV)", offset=-40))
    )
    h, s, v = source.convert("HSV").split()
    assert same(value, Image.merge("HSV", (h, s, v.point(lambda x: max(0, x - 40)))).convert("RGBA"))


def test_channel_multiply(nodes: Nodes) -> None:
    field = nodes.add(Image.new("RGBA", (1, 1), (10, 21, 200, 255)))
    half_green = nodes.result(nodes.run(ImageChannelMultiplyInvocation(image=field, channel="Green (RGBA)", scale=0.5)))
    assert pixels(half_green) == [[(10, 10, 200, 255)]]
    blue = nodes.result(nodes.run(ImageChannelMultiplyInvocation(image=field, channel="Blue (RGBA)", scale=2)))
    assert pixels(blue) == [[(10, 21, 255, 255)]]
    # 255 - 21 * 0.5 = 244.5, truncated
    inverted = nodes.result(
        nodes.run(ImageChannelMultiplyInvocation(image=field, channel="Green (RGBA)", scale=0.5, invert_channel=True))
    )
    assert pixels(inverted) == [[(10, 244, 200, 255)]]
    source = gradient("RGB")
    black = nodes.result(
        nodes.run(ImageChannelMultiplyInvocation(image=nodes.add(source), channel="Black (CMYK)", scale=0))
    )
    c, m, y, k = source.convert("CMYK").split()
    assert same(black, Image.merge("CMYK", (c, m, y, k.point(lambda x: 0))).convert("RGBA"))


def tiles_image() -> Image.Image:
    """4x4, 2x2 tiles: top left red, top right green, bottom left half transparent, bottom right clear."""

    def pixel(x: int, y: int) -> tuple[int, int, int, int]:
        if y < 2:
            return (255, 0, 0, 255) if x < 2 else (0, 255, 0, 255)
        if x < 2:
            return (0, 0, 255, 255) if x == 0 else (0, 0, 0, 0)
        return (0, 0, 0, 0)

    return image_of("RGBA", (4, 4), pixel)


def test_infill_tile_fills_transparent_tiles_with_opaque_ones(nodes: Nodes) -> None:
    source = tiles_image()
    filled = nodes.result(nodes.run(InfillTileInvocation(image=nodes.add(source), tile_size=2, seed=3)))
    assert filled.mode == "RGBA"
    red, green = (255, 0, 0, 255), (0, 255, 0, 255)
    assert pixels(filled.crop((0, 0, 4, 2))) == pixels(source.crop((0, 0, 4, 2)))
    # The half-transparent tile was replaced, then its visible column pasted back.
    bottom_left = pixels(filled.crop((0, 2, 2, 4)))
    assert [row[0] for row in bottom_left] == [(0, 0, 255, 255)] * 2
    assert bottom_left[0][1] == bottom_left[1][1] and bottom_left[0][1] in (red, green)
    assert pixels(filled.crop((2, 2, 4, 4))) in ([[red] * 2] * 2, [[green] * 2] * 2)
    again = nodes.result(nodes.run(InfillTileInvocation(image=nodes.add(source), tile_size=2, seed=3)))
    assert same(again, filled)


def test_infill_tile_fills_tiles_cut_by_the_edges(nodes: Nodes) -> None:
    source = tiles_image().crop((0, 0, 4, 3))
    filled = nodes.result(nodes.run(InfillTileInvocation(image=nodes.add(source), tile_size=2, seed=0)))
    assert filled.size == (4, 3)
    assert filled.getchannel("A").getextrema() == (255, 255)


def test_infill_tile_passes_an_opaque_image_on(nodes: Nodes) -> None:
    field = nodes.add(gradient("RGB"))
    output = nodes.run(InfillTileInvocation(image=field))
    assert output.image == field
    assert len(nodes.stack.image_records.get_all_names()) == 1
    no_opaque_tile = nodes.add(Image.new("RGBA", (4, 4), (0, 0, 0, 0)))
    assert same(
        nodes.result(nodes.run(InfillTileInvocation(image=no_opaque_tile, tile_size=2))), Image.new("RGBA", (4, 4))
    )


def test_images_interface_records_the_session_node_and_flags(nodes: Nodes) -> None:
    board = nodes.stack.boards.create("Node board").board_id
    node = BlankImageInvocation(id="blank-1", is_intermediate=True, board=BoardField(board_id=board), metadata={"a": 1})
    data = InvocationContextData(invocation=node, source_invocation_id="blank", session_id="session-9")
    images = ImagesInterface(nodes.stack.images, data, lambda: GRAPH_JSON)

    saved = images.save(Image.new("RGB", (2, 2)))
    assert (saved.session_id, saved.node_id, saved.is_intermediate, saved.board_id) == (
        "session-9",
        "blank-1",
        True,
        board,
    )
    assert images.get_metadata(saved.image_name) == {"a": 1}
    assert nodes.stack.images.get_graph(saved.image_name) == GRAPH_JSON
    assert saved.has_workflow is False

    other = nodes.stack.boards.create("Other").board_id
    explicit = images.save(
        Image.new("L", (2, 2)),
        board_id=other,
        metadata={"b": 2},
        is_intermediate=False,
        image_category=ImageCategory.MASK,
    )
    assert (explicit.board_id, explicit.is_intermediate, explicit.image_category) == (other, False, ImageCategory.MASK)
    assert images.get_metadata(explicit.image_name) == {"b": 2}
    assert images.get_dto(explicit.image_name) == nodes.stack.images.get_dto(explicit.image_name)
    assert images.get_pil(explicit.image_name).mode == "L"
    assert images.get_pil(explicit.image_name, mode="RGBA").mode == "RGBA"


def test_boards_interface(nodes: Nodes) -> None:
    boards = BoardsInterface(nodes.stack.boards)
    board = boards.create("From a node")
    image = nodes.stack.create()
    boards.add_image_to_board(board.board_id, image.image_name)
    assert boards.get_all_image_names_for_board(board.board_id) == [image.image_name]
    assert boards.get_dto(board.board_id).image_count == 1
    assert [b.board_id for b in boards.get_all()] == [board.board_id]


def test_tensors_and_conditioning_interfaces(tmp_path: Path) -> None:
    tensors = TensorsInterface(ObjectSerializerForwardCache(ObjectSerializerDisk(tmp_path / "tensors", "tensor")))
    conditioning = ConditioningInterface(ObjectSerializerDisk(tmp_path / "tensors", "conditioning"))
    latents = torch.randn(1, 4, 8, 8)
    assert torch.equal(tensors.load(tensors.save(latents)), latents)
    data = {"embeds": torch.randn(1, 77, 16), "pooled": torch.randn(1, 16)}
    loaded = conditioning.load(conditioning.save(data))
    assert torch.equal(loaded["embeds"], data["embeds"]) and torch.equal(loaded["pooled"], data["pooled"])
