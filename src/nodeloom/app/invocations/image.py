"""Image nodes, with InvokeAI's type strings, field names and defaults; pixels come from Pillow alone.

Nodes pass images by name (`ImageField`) and reach them only through `context.images`. Where InvokeAI's
result depends on numpy's float32 arithmetic, the same formula runs here in double precision, through Pillow
lookup tables; where InvokeAI fails on an input (a channel the image lacks, a size the tile grid does not
divide), these nodes do the evident thing instead, as each node's docstring says.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

from PIL import Image, ImageChops, ImageFilter, ImageOps

from nodeloom.app.invocations.baseinvocation import (
    BaseInvocation,
    BaseInvocationOutput,
    describe_node,
    invocation,
    invocation_output,
)
from nodeloom.app.invocations.fields import ColorField, ImageField, InputField, OutputField
from nodeloom.app.invocations.limits import NodeLimits, check_limit
from nodeloom.app.invocations.mixins import WithBoard, WithMetadata
from nodeloom.app.services.image_records.image_records_common import ImageCategory

if TYPE_CHECKING:
    from nodeloom.app.services.images.images_common import ImageDTO
    from nodeloom.app.services.shared.invocation_context import InvocationContext

SEED_MAX = 2**32 - 1
"""The largest seed, as in InvokeAI (numpy seeds are 32-bit)."""


def check_image_size(node: BaseInvocation, width: int, height: int, limits: NodeLimits) -> None:
    """Refuses an image of more than `max_image_pixels` that `node` would make, before it is made."""
    what = f"The pixel count of the image node {describe_node(node)} makes ({width} x {height})"
    check_limit(what, width * height, limits.max_image_pixels, "max_image_pixels")


def _check_made_image(node: BaseInvocation, context: InvocationContext, width: int, height: int) -> None:
    """`check_image_size` for a size known only once the node runs, against the server's limits."""
    if context.config is not None:
        check_image_size(node, width, height, context.config)


@invocation_output("image_output")
class ImageOutput(BaseInvocationOutput):
    """One image and its size."""

    image: ImageField = OutputField(description="The output image")
    width: int = OutputField(description="The width of the image in pixels")
    height: int = OutputField(description="The height of the image in pixels")

    @classmethod
    def build(cls, image_dto: ImageDTO) -> ImageOutput:
        return cls(image=ImageField(image_name=image_dto.image_name), width=image_dto.width, height=image_dto.height)


@invocation_output("image_collection_output")
class ImageCollectionOutput(BaseInvocationOutput):
    """A list of images."""

    collection: list[ImageField] = OutputField(description="The output images")


@invocation("image", title="Image Primitive", tags=["primitives", "image"], category="primitives", version="1.0.1")
class ImageInvocation(BaseInvocation):
    """An existing image, fed into a graph."""

    image: ImageField = InputField(description="The image to load")

    def invoke(self, context: InvocationContext) -> ImageOutput:
        return ImageOutput.build(context.images.get_dto(self.image.image_name))


@invocation(
    "image_collection",
    title="Image Collection Primitive",
    tags=["primitives", "image", "collection"],
    category="primitives",
    version="1.0.0",
)
class ImageCollectionInvocation(BaseInvocation):
    """A list of existing images, fed into a graph."""

    collection: list[ImageField] = InputField(description="The collection of image values")

    def invoke(self, context: InvocationContext) -> ImageCollectionOutput:
        return ImageCollectionOutput(collection=self.collection)


@invocation(
    "save_image",
    title="Save Image",
    tags=["primitives", "image"],
    category="primitives",
    version="1.2.1",
    use_cache=False,
)
class SaveImageInvocation(BaseInvocation, WithMetadata, WithBoard):
    """Saves a copy of an image, on the node's board, with the node's metadata."""

    image: ImageField = InputField(description="The image to process")

    def invoke(self, context: InvocationContext) -> ImageOutput:
        return ImageOutput.build(context.images.save(image=context.images.get_pil(self.image.image_name)))


@invocation("blank_image", title="Blank Image", tags=["image"], category="image", version="1.2.1")
class BlankImageInvocation(BaseInvocation, WithMetadata, WithBoard):
    """Creates an image of one colour."""

    width: int = InputField(default=512, description="The width of the image")
    height: int = InputField(default=512, description="The height of the image")
    mode: Literal["RGB", "RGBA"] = InputField(default="RGB", description="The mode of the image")
    color: ColorField = InputField(default=ColorField(r=0, g=0, b=0, a=255), description="The color of the image")

    def check_limits(self, limits: NodeLimits) -> None:
        super().check_limits(limits)
        check_image_size(self, self.width, self.height, limits)

    def invoke(self, context: InvocationContext) -> ImageOutput:
        image = Image.new(mode=self.mode, size=(self.width, self.height), color=self.color.tuple())
        return ImageOutput.build(context.images.save(image=image))


@invocation("img_crop", title="Crop Image", tags=["image", "crop"], category="image", version="1.2.1")
class ImageCropInvocation(BaseInvocation, WithMetadata, WithBoard):
    """Crops an image to a box, which may reach outside the image: what lies outside is transparent."""

    image: ImageField = InputField(description="The image to crop")
    x: int = InputField(default=0, description="The left x coordinate of the crop rectangle")
    y: int = InputField(default=0, description="The top y coordinate of the crop rectangle")
    width: int = InputField(default=512, gt=0, description="The width of the crop rectangle")
    height: int = InputField(default=512, gt=0, description="The height of the crop rectangle")

    def check_limits(self, limits: NodeLimits) -> None:
        super().check_limits(limits)
        check_image_size(self, self.width, self.height, limits)

    def invoke(self, context: InvocationContext) -> ImageOutput:
        image = context.images.get_pil(self.image.image_name)
        cropped = Image.new(mode="RGBA", size=(self.width, self.height), color=(0, 0, 0, 0))
        cropped.paste(image, (-self.x, -self.y))
        return ImageOutput.build(context.images.save(image=cropped))


@invocation("img_paste", title="Paste Image", tags=["image", "paste"], category="image", version="1.2.1")
class ImagePasteInvocation(BaseInvocation, WithMetadata, WithBoard):
    """Pastes an image into another, growing the canvas to hold both unless `crop` is set.

    With a mask, only the pixels where the mask is dark are pasted (InvokeAI inverts the mask the same way).
    """

    base_image: ImageField = InputField(description="The base image")
    image: ImageField = InputField(description="The image to paste")
    mask: ImageField | None = InputField(default=None, description="The mask to use when pasting")
    x: int = InputField(default=0, description="The left x coordinate at which to paste the image")
    y: int = InputField(default=0, description="The top y coordinate at which to paste the image")
    crop: bool = InputField(default=False, description="Crop to base image dimensions")

    def invoke(self, context: InvocationContext) -> ImageOutput:
        base_image = context.images.get_pil(self.base_image.image_name)
        image = context.images.get_pil(self.image.image_name)
        mask = None
        if self.mask is not None:
            mask = ImageOps.invert(context.images.get_pil(self.mask.image_name, mode="L"))

        min_x, min_y = min(0, self.x), min(0, self.y)
        max_x = max(base_image.width, image.width + self.x)
        max_y = max(base_image.height, image.height + self.y)
        _check_made_image(self, context, max_x - min_x, max_y - min_y)
        pasted = Image.new(mode="RGBA", size=(max_x - min_x, max_y - min_y), color=(0, 0, 0, 0))
        pasted.paste(base_image, (-min_x, -min_y))
        pasted.paste(image, (self.x - min_x, self.y - min_y), mask=mask)
        if self.crop:
            pasted = pasted.crop((-min_x, -min_y, -min_x + base_image.width, -min_y + base_image.height))
        return ImageOutput.build(context.images.save(image=pasted))


@invocation("tomask", title="Mask from Alpha", tags=["image", "mask"], category="image", version="1.2.1")
class MaskFromAlphaInvocation(BaseInvocation, WithMetadata, WithBoard):
    """Extracts the alpha channel of an image as a mask; an image without alpha gives an all-white mask.

    (InvokeAI takes the last band, which for an RGB image is blue.)
    """

    image: ImageField = InputField(description="The image to create the mask from")
    invert: bool = InputField(default=False, description="Whether or not to invert the mask")

    def invoke(self, context: InvocationContext) -> ImageOutput:
        mask = context.images.get_pil(self.image.image_name, mode="RGBA").getchannel("A")
        if self.invert:
            mask = ImageOps.invert(mask)
        return ImageOutput.build(context.images.save(image=mask, image_category=ImageCategory.MASK))


@invocation("img_mul", title="Multiply Images", tags=["image", "multiply"], category="image", version="1.2.1")
class ImageMultiplyInvocation(BaseInvocation, WithMetadata, WithBoard):
    """Multiplies two images of the same size, pixel by pixel (`PIL.ImageChops.multiply`).

    The second image is converted to the first one's mode if they differ.
    """

    image1: ImageField = InputField(description="The first image to multiply")
    image2: ImageField = InputField(description="The second image to multiply")

    def invoke(self, context: InvocationContext) -> ImageOutput:
        image1 = context.images.get_pil(self.image1.image_name)
        image2 = context.images.get_pil(self.image2.image_name, mode=image1.mode)
        if image1.size != image2.size:
            raise ValueError(f"The images must be the same size, not {image1.size} and {image2.size}")
        return ImageOutput.build(context.images.save(image=ImageChops.multiply(image1, image2)))


IMAGE_CHANNELS = Literal["A", "R", "G", "B"]


@invocation("img_chan", title="Extract Image Channel", tags=["image", "channel"], category="image", version="1.2.1")
class ImageChannelInvocation(BaseInvocation, WithMetadata, WithBoard):
    """Extracts one channel of an image as a greyscale image; an image lacking it is read as RGBA."""

    image: ImageField = InputField(description="The image to get the channel from")
    channel: IMAGE_CHANNELS = InputField(default="A", description="The channel to get")

    def invoke(self, context: InvocationContext) -> ImageOutput:
        image = context.images.get_pil(self.image.image_name)
        if self.channel not in image.getbands():
            image = image.convert("RGBA")
        return ImageOutput.build(context.images.save(image=image.getchannel(self.channel)))


IMAGE_MODES = Literal["L", "RGB", "RGBA", "CMYK", "YCbCr", "LAB", "HSV", "I", "F"]


@invocation("img_conv", title="Convert Image Mode", tags=["image", "convert"], category="image", version="1.2.1")
class ImageConvertInvocation(BaseInvocation, WithMetadata, WithBoard):
    """Converts an image to another mode. A PNG cannot hold CMYK, YCbCr, LAB, HSV or floats: those are stored
    as RGB (or 16-bit grey for "I" and "F"), so the mode a later node reads may differ."""

    image: ImageField = InputField(description="The image to convert")
    mode: IMAGE_MODES = InputField(default="L", description="The mode to convert to")

    def invoke(self, context: InvocationContext) -> ImageOutput:
        image = context.images.get_pil(self.image.image_name)
        return ImageOutput.build(context.images.save(image=image.convert(self.mode)))


@invocation("img_blur", title="Blur Image", tags=["image", "blur"], category="image", version="1.2.1")
class ImageBlurInvocation(BaseInvocation, WithMetadata, WithBoard):
    """Blurs an image with a Gaussian or a box filter."""

    image: ImageField = InputField(description="The image to blur")
    radius: float = InputField(default=8.0, ge=0, description="The blur radius")
    blur_type: Literal["gaussian", "box"] = InputField(default="gaussian", description="The type of blur")

    def invoke(self, context: InvocationContext) -> ImageOutput:
        image = context.images.get_pil(self.image.image_name)
        blur = (
            ImageFilter.GaussianBlur(self.radius) if self.blur_type == "gaussian" else ImageFilter.BoxBlur(self.radius)
        )
        return ImageOutput.build(context.images.save(image=image.filter(blur)))


PIL_RESAMPLING_MODES = Literal["nearest", "box", "bilinear", "hamming", "bicubic", "lanczos"]

PIL_RESAMPLING_MAP: dict[str, Image.Resampling] = {
    "nearest": Image.Resampling.NEAREST,
    "box": Image.Resampling.BOX,
    "bilinear": Image.Resampling.BILINEAR,
    "hamming": Image.Resampling.HAMMING,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}


@invocation("img_resize", title="Resize Image", tags=["image", "resize"], category="image", version="1.2.1")
class ImageResizeInvocation(BaseInvocation, WithMetadata, WithBoard):
    """Resizes an image to a width and a height."""

    image: ImageField = InputField(description="The image to resize")
    width: int = InputField(default=512, gt=0, description="The width to resize to (px)")
    height: int = InputField(default=512, gt=0, description="The height to resize to (px)")
    resample_mode: PIL_RESAMPLING_MODES = InputField(default="bicubic", description="The resampling mode")

    def check_limits(self, limits: NodeLimits) -> None:
        super().check_limits(limits)
        check_image_size(self, self.width, self.height, limits)

    def invoke(self, context: InvocationContext) -> ImageOutput:
        image = context.images.get_pil(self.image.image_name)
        resized = image.resize((self.width, self.height), resample=PIL_RESAMPLING_MAP[self.resample_mode])
        return ImageOutput.build(context.images.save(image=resized))


@invocation("img_scale", title="Scale Image", tags=["image", "scale"], category="image", version="1.2.1")
class ImageScaleInvocation(BaseInvocation, WithMetadata, WithBoard):
    """Scales an image by a factor; the new size is rounded down (and is at least one pixel)."""

    image: ImageField = InputField(description="The image to scale")
    scale_factor: float = InputField(default=2.0, gt=0, description="The factor by which to scale the image")
    resample_mode: PIL_RESAMPLING_MODES = InputField(default="bicubic", description="The resampling mode")

    def invoke(self, context: InvocationContext) -> ImageOutput:
        image = context.images.get_pil(self.image.image_name)
        size = (max(1, int(image.width * self.scale_factor)), max(1, int(image.height * self.scale_factor)))
        _check_made_image(self, context, *size)
        resized = image.resize(size, resample=PIL_RESAMPLING_MAP[self.resample_mode])
        return ImageOutput.build(context.images.save(image=resized))


def _eight_bit(image: Image.Image) -> Image.Image:
    """The image with 8-bit bands, as the per-value tables below need: palette and other modes converted."""
    if image.mode in ("L", "LA", "RGB", "RGBA"):
        return image
    return image.convert("RGBA" if image.has_transparency_data else "RGB")


def _table(value: Callable[[int], float]) -> list[int]:
    """A Pillow lookup table for `value` over 0-255, each result truncated into 0-255 as numpy's uint8 cast
    truncates the floats InvokeAI computes."""
    return [min(255, max(0, int(value(v)))) for v in range(256)]


def _map_values(image: Image.Image, value: Callable[[int], float]) -> Image.Image:
    """Every band of the 8-bit image mapped through `value`."""
    return image.point(_table(value) * len(image.getbands()))


@invocation("img_lerp", title="Lerp Image", tags=["image", "lerp"], category="image", version="1.2.1")
class ImageLerpInvocation(BaseInvocation, WithMetadata, WithBoard):
    """Maps every value of every channel linearly from 0-255 onto `min`-`max`."""

    image: ImageField = InputField(description="The image to lerp")
    min: int = InputField(default=0, ge=0, le=255, description="The minimum output value")
    max: int = InputField(default=255, ge=0, le=255, description="The maximum output value")

    def invoke(self, context: InvocationContext) -> ImageOutput:
        image = _eight_bit(context.images.get_pil(self.image.image_name))
        lerped = _map_values(image, lambda v: v / 255 * (self.max - self.min) + self.min)
        return ImageOutput.build(context.images.save(image=lerped))


@invocation("img_ilerp", title="Inverse Lerp Image", tags=["image", "ilerp"], category="image", version="1.2.1")
class ImageInverseLerpInvocation(BaseInvocation, WithMetadata, WithBoard):
    """Maps every value of every channel linearly from `min`-`max` onto 0-255, clamping outside the range.

    With `min` equal to `max`, the result is a step: 255 above `min`, 0 elsewhere (where InvokeAI divides by
    zero).
    """

    image: ImageField = InputField(description="The image to lerp")
    min: int = InputField(default=0, ge=0, le=255, description="The minimum input value")
    max: int = InputField(default=255, ge=0, le=255, description="The maximum input value")

    def invoke(self, context: InvocationContext) -> ImageOutput:
        image = _eight_bit(context.images.get_pil(self.image.image_name))
        return ImageOutput.build(context.images.save(image=_map_values(image, self._inverse_lerp)))

    def _inverse_lerp(self, v: int) -> float:
        if self.max == self.min:
            return 255 if v > self.min else 0
        return min(max(v - self.min, 0) / (self.max - self.min), 1) * 255


COLOR_CHANNELS = Literal[
    "Red (RGBA)",
    "Green (RGBA)",
    "Blue (RGBA)",
    "Alpha (RGBA)",
    "Cyan (CMYK)",
    "Magenta (CMYK)",
    "Yellow (CMYK)",
    "Black (CMYK)",
    "Hue (HSV)",
    "Saturation (HSV)",
    "Value (HSV)",
    "Luminosity (LAB)",
    "A (LAB)",
    "B (LAB)",
    "Y (YCbCr)",
    "Cb (YCbCr)",
    "Cr (YCbCr)",
]

CHANNEL_FORMATS: dict[str, tuple[str, int]] = {
    "Red (RGBA)": ("RGBA", 0),
    "Green (RGBA)": ("RGBA", 1),
    "Blue (RGBA)": ("RGBA", 2),
    "Alpha (RGBA)": ("RGBA", 3),
    "Cyan (CMYK)": ("CMYK", 0),
    "Magenta (CMYK)": ("CMYK", 1),
    "Yellow (CMYK)": ("CMYK", 2),
    "Black (CMYK)": ("CMYK", 3),
    "Hue (HSV)": ("HSV", 0),
    "Saturation (HSV)": ("HSV", 1),
    "Value (HSV)": ("HSV", 2),
    "Luminosity (LAB)": ("LAB", 0),
    "A (LAB)": ("LAB", 1),
    "B (LAB)": ("LAB", 2),
    "Y (YCbCr)": ("YCbCr", 0),
    "Cb (YCbCr)": ("YCbCr", 1),
    "Cr (YCbCr)": ("YCbCr", 2),
}
"""Each channel's colour space (a Pillow mode) and its band index there."""


def adjust_channel(image: Image.Image, channel: str, value: Callable[[int], float]) -> Image.Image:
    """The image with one channel of one colour space mapped through `value`, returned as RGBA."""
    mode, index = CHANNEL_FORMATS[channel]
    bands = list(image.convert(mode).split())
    bands[index] = bands[index].point(_table(value))
    return Image.merge(mode, bands).convert("RGBA")


CHANNEL_TAGS = [
    "red",
    "green",
    "blue",
    "alpha",
    "cyan",
    "magenta",
    "yellow",
    "black",
    "hue",
    "saturation",
    "luminosity",
    "value",
]


@invocation(
    "img_channel_offset",
    title="Offset Image Channel",
    tags=["image", "offset", *CHANNEL_TAGS],
    category="image",
    version="1.2.1",
)
class ImageChannelOffsetInvocation(BaseInvocation, WithMetadata, WithBoard):
    """Adds a value to one channel of an image, in that channel's colour space, clamping to 0-255."""

    image: ImageField = InputField(description="The image to adjust")
    channel: COLOR_CHANNELS = InputField(description="Which channel to adjust")
    offset: int = InputField(default=0, ge=-255, le=255, description="The amount to adjust the channel by")

    def invoke(self, context: InvocationContext) -> ImageOutput:
        image = context.images.get_pil(self.image.image_name)
        adjusted = adjust_channel(image, self.channel, lambda v: v + self.offset)
        return ImageOutput.build(context.images.save(image=adjusted))


@invocation(
    "img_channel_multiply",
    title="Multiply Image Channel",
    tags=["image", "invert", "scale", "multiply", *CHANNEL_TAGS],
    category="image",
    version="1.2.1",
)
class ImageChannelMultiplyInvocation(BaseInvocation, WithMetadata, WithBoard):
    """Scales one channel of an image, in that channel's colour space, clamping to 0-255, then maybe inverts it."""

    image: ImageField = InputField(description="The image to adjust")
    channel: COLOR_CHANNELS = InputField(description="Which channel to adjust")
    scale: float = InputField(default=1.0, ge=0.0, description="The amount to scale the channel by.")
    invert_channel: bool = InputField(default=False, description="Invert the channel after scaling")

    def invoke(self, context: InvocationContext) -> ImageOutput:
        image = context.images.get_pil(self.image.image_name)
        adjusted = adjust_channel(image, self.channel, self._scaled)
        return ImageOutput.build(context.images.save(image=adjusted))

    def _scaled(self, v: int) -> float:
        scaled = min(255.0, max(0.0, v * self.scale))
        return 255 - scaled if self.invert_channel else scaled


def infill_tile(image: Image.Image, tile_size: int, seed: int) -> Image.Image:
    """`image` (RGBA) with each tile that holds a fully transparent pixel replaced by a random opaque tile.

    The grid starts at the top left; tiles cut by the right or bottom edge are filled from the top left of a
    whole opaque tile (InvokeAI fails on a size the tile size does not divide). The original is then pasted
    back over the result through its own alpha, so no visible pixel changes. Without any whole opaque tile the
    image is returned as it is.
    """
    alpha = image.getchannel("A")
    boxes = [
        (left, top, min(left + tile_size, image.width), min(top + tile_size, image.height))
        for top in range(0, image.height, tile_size)
        for left in range(0, image.width, tile_size)
    ]

    def opaque(box: tuple[int, int, int, int]) -> bool:
        # Bucket 0 of the alpha histogram counts the fully transparent pixels.
        return alpha.crop(box).histogram()[0] == 0

    sources = [box for box in boxes if box[2] - box[0] == box[3] - box[1] == tile_size and opaque(box)]
    if not sources:
        return image
    rng = random.Random(seed)
    infilled = image.copy()
    for box in boxes:
        if not opaque(box):
            left, top, _, _ = rng.choice(sources)
            tile = image.crop((left, top, left + box[2] - box[0], top + box[3] - box[1]))
            infilled.paste(tile, box[:2])
    infilled.paste(image, (0, 0), alpha)
    return infilled


@invocation("infill_tile", title="Tile Infill", tags=["image", "inpaint"], category="inpaint", version="1.2.3")
class InfillTileInvocation(BaseInvocation, WithMetadata, WithBoard):
    """Fills the transparent areas of an image with tiles of the image. An image without transparency is
    passed on as it is, without saving a copy."""

    image: ImageField = InputField(description="The image to process")
    tile_size: int = InputField(default=32, ge=1, description="The tile size (px)")
    seed: int = InputField(default=0, ge=0, le=SEED_MAX, description="The seed to use for tile generation")

    def invoke(self, context: InvocationContext) -> ImageOutput:
        image = context.images.get_pil(self.image.image_name)
        if not image.has_transparency_data:
            return ImageOutput.build(context.images.get_dto(self.image.image_name))
        infilled = infill_tile(image.convert("RGBA"), self.tile_size, self.seed)
        return ImageOutput.build(context.images.save(image=infilled))
