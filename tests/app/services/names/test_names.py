from __future__ import annotations

import uuid

import pytest

from nodeloom.app.services.names.names_common import InvalidImageNameError, is_image_name, validate_image_name
from nodeloom.app.services.names.names_default import SimpleNameService
from nodeloom.app.services.urls.urls_default import LocalUrlService

VALID = "0b5b2c2e-3f4a-4b6c-8d7e-9f0a1b2c3d4e.png"


def test_created_names_are_unique_uuid_pngs_that_validate() -> None:
    names = SimpleNameService()
    created = {names.create_image_name() for _ in range(1000)}
    assert len(created) == 1000
    for name in created:
        assert validate_image_name(name) == name
        assert uuid.UUID(name.removesuffix(".png")).version == 4


@pytest.mark.parametrize(
    "name",
    [
        "../" + VALID,
        "thumbnails/" + VALID,
        VALID.replace("-", "/", 1),
        "..",
        ".",
        "",
        "/etc/passwd",
        "/" + VALID,
        "C:\\" + VALID,
        "..\\" + VALID,
        VALID + "\x00",
        VALID.replace("0b", "\x00b", 1),
        VALID + "\n",
        VALID + "/..",
        VALID.upper(),
        VALID.removesuffix(".png"),
        VALID.removesuffix(".png") + ".webp",
        VALID.removesuffix(".png") + ".PNG",
        VALID.removesuffix(".png") + ".png.png",
        "x" + VALID,
        # A valid-looking name in another shape: a version-1 UUID, and one without hyphens.
        f"{uuid.uuid1()}.png",
        f"{uuid.uuid4().hex}.png",
        f" {VALID}",
    ],
)
def test_any_other_shape_is_refused(name: str) -> None:
    assert not is_image_name(name)
    with pytest.raises(InvalidImageNameError) as raised:
        validate_image_name(name)
    assert raised.value.name == name
    assert "is not an image name" in str(raised.value)


@pytest.mark.parametrize("name", [None, 3, b"0b5b2c2e-3f4a-4b6c-8d7e-9f0a1b2c3d4e.png", ["a"]])
def test_non_strings_are_refused(name: object) -> None:
    with pytest.raises(InvalidImageNameError):
        validate_image_name(name)


def test_urls_follow_invokeais_scheme() -> None:
    urls = LocalUrlService()
    assert urls.get_image_url(VALID) == f"/api/v1/images/i/{VALID}/full"
    assert urls.get_image_url(VALID, thumbnail=True) == f"/api/v1/images/i/{VALID}/thumbnail"
    assert (
        LocalUrlService("http://host:9090/api/v1/").get_image_url(VALID)
        == f"http://host:9090/api/v1/images/i/{VALID}/full"
    )
