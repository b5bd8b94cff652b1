from __future__ import annotations

import http.client
import io
import json
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from PIL import Image, PngImagePlugin
from tests.app.api.image_api_helpers import CONTENT_TYPES, encode, post_upload, upload
from tests.conftest import LiveServer
from tests.helpers import edge, graph_json, wait_for

from nodeloom.app.services.image_records.image_records_common import ImageCategory, ResourceOrigin
from nodeloom.app.services.object_serializer.object_serializer_common import ObjectNotFoundError

StartServer = Callable[..., LiveServer]

GRAPH = {"id": "graph-1", "nodes": {}, "edges": []}
WORKFLOW = {"name": "a workflow", "nodes": [], "edges": []}


@pytest.fixture
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{server.url}/api/v1", timeout=30) as c:
        yield c


def images_folder(server: LiveServer) -> Path:
    return server.config.outputs_path / "images"


def files_on_disk(server: LiveServer) -> set[str]:
    """Every file in the images folder and its thumbnails folder, by path relative to it."""
    folder = images_folder(server)
    return {path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file()}


def image_files(image_name: str) -> set[str]:
    return {image_name, f"thumbnails/{Path(image_name).stem}.webp"}


def noise(size: tuple[int, int]) -> bytes:
    """A PNG of random pixels: it does not compress, so its size is about 3 bytes a pixel."""
    buffer = io.BytesIO()
    Image.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3)).save(buffer, format="PNG")
    return buffer.getvalue()


def assert_nothing_stored(server: LiveServer, client: httpx.Client) -> None:
    assert client.get("/images/").json()["total"] == 0
    assert files_on_disk(server) == set()


def get_json(client: httpx.Client, url: str, **params: Any) -> Any:
    response = client.get(url, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def names(page: dict[str, Any]) -> list[str]:
    return [image["image_name"] for image in page["items"]]


# --- Upload ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("image_format", ["PNG", "JPEG", "WEBP"])
def test_upload_decodes_each_format_and_stores_a_png(client: httpx.Client, image_format: str) -> None:
    response = post_upload(
        client,
        encode(image_format, size=(123, 45), color="red"),
        content_type=CONTENT_TYPES[image_format],
        filename=f"photo.{image_format.lower()}",
        image_category="control",
    )
    assert response.status_code == 201, response.text
    dto = response.json()
    name = dto["image_name"]
    assert (dto["width"], dto["height"]) == (123, 45)
    assert dto["image_origin"] == "external" and dto["image_category"] == "control"
    assert dto["is_intermediate"] is False and dto["board_id"] is None
    assert response.headers["location"] == dto["image_url"] == f"/api/v1/images/i/{name}/full"
    assert get_json(client, f"/images/i/{name}") == dto
    with Image.open(io.BytesIO(client.get(f"/images/i/{name}/full").content)) as stored:
        assert stored.format == "PNG" and stored.size == (123, 45)
        pixel = stored.convert("RGB").getpixel((60, 20))
    assert isinstance(pixel, tuple) and pixel[0] > 240 and max(pixel[1:]) < 15


def test_upload_keeps_what_a_nodeloom_server_embedded(client: httpx.Client) -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("nodeloom_graph", json.dumps(GRAPH))
    info.add_text("nodeloom_workflow", json.dumps(WORKFLOW))
    info.add_text("nodeloom_metadata", json.dumps({"seed": 7}))
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="PNG", pnginfo=info)
    dto = upload(client, buffer.getvalue())
    assert dto["has_workflow"] is True
    embedded = get_json(client, f"/images/i/{dto['image_name']}/workflow")
    assert json.loads(embedded["graph"]) == GRAPH and json.loads(embedded["workflow"]) == WORKFLOW
    assert get_json(client, f"/images/i/{dto['image_name']}/metadata") == {"seed": 7}


def test_upload_drops_embedded_metadata_that_is_not_a_json_object(client: httpx.Client) -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("nodeloom_metadata", "[1, 2")
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="PNG", pnginfo=info)
    dto = upload(client, buffer.getvalue())
    assert get_json(client, f"/images/i/{dto['image_name']}/metadata") is None


def _truncated_png() -> bytes:
    data = noise((64, 64))
    return data[: len(data) // 2]


def _gif() -> bytes:
    buffer = io.BytesIO()
    Image.new("P", (8, 8)).save(buffer, format="GIF")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("data", "content_type", "status", "message"),
    [
        pytest.param(b"just some text\n", "image/png", 415, "not a PNG, JPEG or WEBP image", id="text-as-png"),
        pytest.param(_truncated_png(), "image/png", 415, "could not be decoded: image file is truncated", id="cut"),
        pytest.param(encode(), "text/plain", 415, "not 'text/plain'", id="wrong-content-type"),
        pytest.param(_gif(), "image/gif", 415, "not 'image/gif'", id="gif"),
        pytest.param(_gif(), "image/png", 415, "not a PNG, JPEG or WEBP image", id="gif-as-png"),
        pytest.param(b"", "image/png", 415, "not a PNG, JPEG or WEBP image", id="empty"),
    ],
)
def test_upload_refuses_what_is_not_an_accepted_image(
    server: LiveServer, client: httpx.Client, data: bytes, content_type: str, status: int, message: str
) -> None:
    response = post_upload(client, data, content_type=content_type)
    assert response.status_code == status, response.text
    assert message in response.json()["detail"]
    assert_nothing_stored(server, client)


def test_upload_over_the_configured_size_is_refused(live_server: StartServer) -> None:
    server = live_server(max_upload_mb=1)
    big = noise((820, 820))
    assert 2_000_000 < len(big) < 2_200_000

    def chunked() -> Iterator[bytes]:
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="big.png"\r\n'
        yield b"Content-Type: image/png\r\n\r\n"
        for start in range(0, len(big), 65536):
            yield big[start : start + 65536]
        yield b"\r\n--b--\r\n"

    with httpx.Client(base_url=f"{server.url}/api/v1", timeout=30) as client:
        declared = post_upload(client, big)
        # Without a Content-Length: the body is counted as it arrives.
        streamed = client.post(
            "/images/upload", content=chunked(), headers={"Content-Type": "multipart/form-data; boundary=b"}
        )
        for response in (declared, streamed):
            assert response.status_code == 413, response.text
            assert response.json()["detail"] == "The upload is larger than 1 MB (max_upload_mb)"
        assert_nothing_stored(server, client)
        assert upload(client, noise((400, 400)))["width"] == 400


def test_upload_with_too_many_pixels_is_refused(
    server: LiveServer, client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Pillow's limit lowered, so that a small file stands for a decompression bomb.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    response = post_upload(client, encode(size=(100, 100)))
    assert response.status_code == 413, response.text
    assert "too many pixels" in response.json()["detail"]
    assert_nothing_stored(server, client)


def test_upload_to_an_unknown_board_is_404_and_stores_nothing(server: LiveServer, client: httpx.Client) -> None:
    response = post_upload(client, encode(), board_id="no-such-board")
    assert response.status_code == 404
    assert "no-such-board" in response.json()["detail"]
    assert_nothing_stored(server, client)


# --- Listing -----------------------------------------------------------------------------------------------


def test_list_filters_and_pages(server: LiveServer, client: httpx.Client) -> None:
    board_id = client.post("/boards/", params={"board_name": "picks"}).json()["board_id"]
    user = upload(client)["image_name"]
    mask = upload(client, image_category="mask", is_intermediate=True)["image_name"]
    control = upload(client, image_category="control", board_id=board_id)["image_name"]
    internal = server.services.images.create(
        Image.new("RGB", (4, 4)), ResourceOrigin.INTERNAL, ImageCategory.GENERAL
    ).image_name

    everything = get_json(client, "/images/")
    assert everything["total"] == 4 and names(everything) == [internal, control, mask, user]
    assert names(get_json(client, "/images/", image_origin="internal")) == [internal]
    assert names(get_json(client, "/images/", image_origin="external")) == [control, mask, user]
    assert names(get_json(client, "/images/", categories=["mask", "control"])) == [control, mask]
    assert names(get_json(client, "/images/", is_intermediate=True)) == [mask]
    assert names(get_json(client, "/images/", is_intermediate=False)) == [internal, control, user]
    assert names(get_json(client, "/images/", board_id=board_id)) == [control]
    assert names(get_json(client, "/images/", board_id="none")) == [internal, mask, user]
    assert names(get_json(client, "/images/", categories="user", board_id="none")) == [user]

    page = get_json(client, "/images/", offset=1, limit=2)
    assert (page["offset"], page["limit"], page["total"]) == (1, 2, 4)
    assert names(page) == [control, mask]
    client.patch(f"/images/i/{user}", json={"starred": True})
    assert names(get_json(client, "/images/"))[0] == user

    board_page = get_json(client, "/images/", board_id=board_id)
    assert board_page["items"][0]["board_id"] == board_id
    for bad in ({"limit": 0}, {"offset": -1}, {"categories": "nonsense"}, {"image_origin": "elsewhere"}):
        assert client.get("/images/", params=bad).status_code == 422, bad


# --- Files and embedded data ---------------------------------------------------------------------------------


def test_full_thumbnail_metadata_and_workflow(server: LiveServer, client: httpx.Client) -> None:
    dto = server.services.images.create(
        Image.new("RGBA", (600, 300), (0, 0, 255, 128)),
        ResourceOrigin.INTERNAL,
        ImageCategory.GENERAL,
        metadata={"seed": 42, "prompt": "a cat"},
        workflow=json.dumps(WORKFLOW),
        graph=json.dumps(GRAPH),
    )
    name = dto.image_name

    full = client.get(f"/images/i/{name}/full")
    assert full.status_code == 200
    assert full.headers["content-type"] == "image/png"
    assert "max-age=31536000" in full.headers["cache-control"]
    assert full.content == (images_folder(server) / name).read_bytes()
    with Image.open(io.BytesIO(full.content)) as image:
        assert image.size == (600, 300) and image.mode == "RGBA"

    head = client.head(f"/images/i/{name}/full")
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["content-length"]) == len(full.content)

    thumbnail = client.get(f"/images/i/{name}/thumbnail")
    assert thumbnail.status_code == 200
    assert thumbnail.headers["content-type"] == "image/webp"
    assert "max-age=31536000" in thumbnail.headers["cache-control"]
    with Image.open(io.BytesIO(thumbnail.content)) as image:
        assert image.format == "WEBP" and image.size == (256, 128)

    assert get_json(client, f"/images/i/{name}/metadata") == {"seed": 42, "prompt": "a cat"}
    embedded = get_json(client, f"/images/i/{name}/workflow")
    assert json.loads(embedded["workflow"]) == WORKFLOW and json.loads(embedded["graph"]) == GRAPH

    bare = upload(client)["image_name"]
    assert get_json(client, f"/images/i/{bare}/metadata") is None
    assert get_json(client, f"/images/i/{bare}/workflow") == {"workflow": None, "graph": None}


IMAGE_ROUTES = [
    ("GET", ""),
    ("GET", "/full"),
    ("HEAD", "/full"),
    ("GET", "/thumbnail"),
    ("GET", "/metadata"),
    ("GET", "/workflow"),
    ("PATCH", ""),
    ("DELETE", ""),
]
"""Every route under /images/i/{image_name}, as (method, what follows the name)."""


def test_unknown_image_is_404(client: httpx.Client) -> None:
    name = f"{uuid.uuid4()}.png"
    for method, suffix in IMAGE_ROUTES:
        body = {"starred": True} if method == "PATCH" else None
        response = client.request(method, f"/images/i/{name}{suffix}", json=body)
        assert response.status_code == 404, (method, suffix)
        if method != "HEAD":
            assert name in response.json()["detail"]


def test_a_record_whose_file_is_gone_is_404_not_500(server: LiveServer, client: httpx.Client) -> None:
    name = upload(client)["image_name"]
    for file in image_files(name):
        (images_folder(server) / file).unlink()
    for suffix in ("/full", "/thumbnail", "/metadata", "/workflow"):
        assert client.get(f"/images/i/{name}{suffix}").status_code == 404, suffix


# --- Changes and deletion ------------------------------------------------------------------------------------


def test_patch_stars_recategorises_and_flags(client: httpx.Client) -> None:
    name = upload(client)["image_name"]
    starred = client.patch(f"/images/i/{name}", json={"starred": True})
    assert starred.status_code == 200 and starred.json()["starred"] is True
    changed = client.patch(f"/images/i/{name}", json={"image_category": "mask", "is_intermediate": True}).json()
    assert (changed["image_category"], changed["is_intermediate"], changed["starred"]) == ("mask", True, True)
    assert get_json(client, f"/images/i/{name}") == changed
    for bad in ({"starred": "yes"}, {"image_category": "poster"}, {"width": 5}):
        assert client.patch(f"/images/i/{name}", json=bad).status_code == 422, bad
    assert get_json(client, f"/images/i/{name}") == changed


def test_delete_one_removes_record_and_files(server: LiveServer, client: httpx.Client) -> None:
    name = upload(client)["image_name"]
    kept = upload(client)["image_name"]
    assert files_on_disk(server) == image_files(name) | image_files(kept)
    response = client.delete(f"/images/i/{name}")
    assert response.status_code == 200 and response.json() == {"deleted_images": [name]}
    assert files_on_disk(server) == image_files(kept)
    assert client.get(f"/images/i/{name}").status_code == 404
    assert client.delete(f"/images/i/{name}").status_code == 404


def test_delete_many_skips_unknown_names(server: LiveServer, client: httpx.Client) -> None:
    first, second, kept = (upload(client)["image_name"] for _ in range(3))
    unknown = f"{uuid.uuid4()}.png"
    response = client.post("/images/delete", json={"image_names": [first, unknown, second]})
    assert response.status_code == 200
    assert response.json() == {"deleted_images": [first, second]}
    assert names(get_json(client, "/images/")) == [kept]
    assert files_on_disk(server) == image_files(kept)


def test_star_and_unstar_many(client: httpx.Client) -> None:
    first, second, third = (upload(client)["image_name"] for _ in range(3))
    unknown = f"{uuid.uuid4()}.png"
    starred = client.post("/images/star", json={"image_names": [first, second, unknown]})
    assert starred.status_code == 200 and starred.json() == {"updated_image_names": [first, second]}
    assert names(get_json(client, "/images/")) == [second, first, third]
    unstarred = client.post("/images/unstar", json={"image_names": [second, unknown]})
    assert unstarred.json() == {"updated_image_names": [second]}
    assert {image["image_name"]: image["starred"] for image in get_json(client, "/images/")["items"]} == {
        first: True,
        second: False,
        third: False,
    }


# --- Images saved by nodes -----------------------------------------------------------------------------------


def blank(node_id: str, **fields: Any) -> dict[str, Any]:
    color = {"r": 0, "g": 128, "b": 255, "a": 255}
    return {"id": node_id, "type": "blank_image", "width": 80, "height": 40, "color": color, **fields}


def run_session(client: httpx.Client, graph: dict[str, Any]) -> dict[str, Any]:
    """Runs the graph in a session; returns how it ended, with its outputs by source node."""
    enqueued = client.post("/queue/default/enqueue_batch", json={"batch": {"graph": graph, "workflow": WORKFLOW}})
    assert enqueued.status_code == 200, enqueued.text
    batch_id = enqueued.json()["batch"]["batch_id"]
    waited = get_json(client, f"/queue/default/b/{batch_id}/wait", timeout=10)
    assert waited["finished"], waited
    outcomes: list[dict[str, Any]] = waited["items"]
    assert [outcome["status"] for outcome in outcomes] == ["completed"], outcomes
    return outcomes[0]


def saved_image(outcome: dict[str, Any], node_id: str) -> str:
    name: str = outcome["outputs"][node_id][0]["image"]["image_name"]
    return name


@pytest.mark.parametrize(
    "graph_of",
    [
        pytest.param(lambda board: graph_json([blank("save", board=board)]), id="blank_image"),
        pytest.param(
            lambda board: graph_json(
                [blank("blank", is_intermediate=True), {"id": "save", "type": "save_image", "board": board}],
                [edge("blank", "image", "save", "image")],
            ),
            id="blank_image-save_image",
        ),
    ],
)
def test_image_saved_by_a_node_in_a_session(
    client: httpx.Client, graph_of: Callable[[dict[str, str]], dict[str, Any]]
) -> None:
    board = client.post("/boards/", params={"board_name": "renders"}).json()
    outcome = run_session(client, graph_of({"board_id": board["board_id"]}))
    item = get_json(client, f"/queue/default/i/{outcome['item_id']}")
    name = saved_image(outcome, "save")

    dto = get_json(client, f"/images/i/{name}")
    assert dto["image_origin"] == "internal" and dto["image_category"] == "general"
    assert (dto["width"], dto["height"]) == (80, 40)
    assert dto["session_id"] == item["session_id"] and dto["board_id"] == board["board_id"]
    assert dto["is_intermediate"] is False and dto["has_workflow"] is True

    with Image.open(io.BytesIO(client.get(dto["image_url"].removeprefix("/api/v1")).content)) as image:
        assert image.format == "PNG" and image.convert("RGB").getpixel((5, 5)) == (0, 128, 255)
    with Image.open(io.BytesIO(client.get(f"/images/i/{name}/thumbnail").content)) as thumbnail:
        assert thumbnail.format == "WEBP" and thumbnail.size == (80, 40)
    assert client.get(f"/images/i/{name}/metadata").json() is None
    embedded = get_json(client, f"/images/i/{name}/workflow")
    assert json.loads(embedded["graph"]) == item["session"]["graph"]
    assert json.loads(embedded["workflow"]) == WORKFLOW

    assert get_json(client, f"/boards/{board['board_id']}/image_names") == [name]
    board_now = get_json(client, f"/boards/{board['board_id']}")
    assert (board_now["image_count"], board_now["cover_image_name"]) == (1, name)
    intermediates = [saved_image(outcome, "blank")] if "blank" in outcome["outputs"] else []
    assert names(get_json(client, "/images/", is_intermediate=True)) == intermediates


def test_clear_intermediates_removes_images_objects_and_cached_outputs(
    server: LiveServer, client: httpx.Client
) -> None:
    from_session = saved_image(run_session(client, graph_json([blank("blank", is_intermediate=True)])), "blank")
    kept = {upload(client)["image_name"], upload(client, image_category="mask")["image_name"]}
    uploaded = upload(client, is_intermediate=True)["image_name"]
    tensor = server.services.tensors.save({"latents": [1.0, 2.0]})
    conditioning = server.services.conditioning.save({"embeds": [[0.5]]})
    assert files_on_disk(server) == set().union(*(image_files(name) for name in {*kept, from_session, uploaded}))
    assert get_json(client, "/images/intermediates") == 2
    assert get_json(client, "/app/invocation_cache/status")["size"] > 0
    wait_for(lambda: server.services.session_processor.get_status().current_item_id is None, what="an idle processor")

    response = client.delete("/images/intermediates")
    assert response.status_code == 200, response.text
    assert response.json() == {"deleted_images": 2, "deleted_tensors": 1, "deleted_conditioning": 1}

    assert files_on_disk(server) == set().union(*(image_files(name) for name in kept))
    for name in (from_session, uploaded):
        assert client.get(f"/images/i/{name}").status_code == 404
    assert {image["image_name"] for image in get_json(client, "/images/")["items"]} == kept
    assert get_json(client, "/images/intermediates") == 0
    for store, name in ((server.services.tensors, tensor), (server.services.conditioning, conditioning)):
        with pytest.raises(ObjectNotFoundError):
            store.load(name)
    for folder in ("tensors", "conditioning"):
        assert list((server.config.outputs_path / folder).iterdir()) == []
    assert get_json(client, "/app/invocation_cache/status")["size"] == 0


def test_clear_intermediates_is_refused_while_a_session_runs(server: LiveServer, client: httpx.Client) -> None:
    intermediate = upload(client, is_intermediate=True)["image_name"]
    enqueued = client.post(
        "/queue/default/enqueue_batch",
        json={"batch": {"graph": graph_json([{"id": "wait", "type": "test_wait", "seconds": 30}])}},
    )
    assert enqueued.status_code == 200, enqueued.text
    item_id = wait_for(lambda: server.services.session_processor.get_status().current_item_id, what="a running item")
    response = client.delete("/images/intermediates")
    assert response.status_code == 409
    assert "running" in response.json()["detail"]
    assert get_json(client, f"/images/i/{intermediate}")["is_intermediate"] is True
    client.put(f"/queue/default/i/{item_id}/cancel")


# --- Names of any other shape --------------------------------------------------------------------------------

SENTINEL = b"SENTINEL-" + uuid.uuid4().hex.encode() + b"-" * 64


def raw_request(server: LiveServer, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
    """Sends `path` exactly as written: httpx would resolve its dot segments first."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def snapshot_outside_outputs(server: LiveServer) -> dict[Path, tuple[int, bytes]]:
    """Every file under the test's folder except the outputs and the database, with its mtime and content."""
    base = server.config.root.parent
    skipped = (server.config.outputs_path, server.config.db_path.parent)
    return {
        path: (path.stat().st_mtime_ns, path.read_bytes())
        for path in base.rglob("*")
        if path.is_file() and not any(path.is_relative_to(folder) for folder in skipped)
    }


def hostile_names(sentinel: Path) -> list[str]:
    """Path segments, percent-encoded as sent, that try to leave the images folder or are of another shape."""
    a_name = str(uuid.uuid4())
    return [
        "..%2F..%2F..%2Fsentinel.png",
        "..%2Fx.png",
        "..%2F..%2Fetc%2Fpasswd",
        "..%5C..%5C..%5Csentinel.png",
        quote(str(sentinel), safe=""),
        f"{a_name}.png%00",
        f"{a_name}%00.png",
        "sentinel.png",
        f"{a_name.upper()}.png",
        f"{a_name}.webp",
        a_name,
        f"{a_name}.png%0A",
        "..",
        "%2E%2E",
    ]


def test_names_of_any_other_shape_never_reach_the_disk(server: LiveServer, client: httpx.Client) -> None:
    sentinel = server.config.root.parent / "sentinel.png"
    sentinel.write_bytes(SENTINEL)
    real = upload(client)["image_name"]
    before = snapshot_outside_outputs(server)

    for name in hostile_names(sentinel):
        for method, suffix in IMAGE_ROUTES:
            body = b'{"starred": true}' if method == "PATCH" else None
            status, content = raw_request(server, method, f"/api/v1/images/i/{name}{suffix}", body)
            assert 400 <= status < 500, (method, name, suffix, status)
            assert SENTINEL not in content
    for method, path in (("GET", "/api/v1/images/i/../../../sentinel.png/full"), ("GET", "/api/v1/../sentinel.png")):
        status, content = raw_request(server, method, path)
        assert 400 <= status < 500 and SENTINEL not in content, path

    assert snapshot_outside_outputs(server) == before
    assert files_on_disk(server) == image_files(real)
    assert get_json(client, f"/images/i/{real}")["starred"] is False


def test_a_link_out_of_the_images_folder_is_never_followed(server: LiveServer, client: httpx.Client) -> None:
    sentinel = server.config.root.parent / "sentinel.png"
    sentinel.write_bytes(SENTINEL)
    link = images_folder(server) / f"{uuid.uuid4()}.png"
    link.symlink_to(sentinel)
    for method, suffix in (("GET", "/full"), ("GET", "/metadata"), ("DELETE", "")):
        response = client.request(method, f"/images/i/{link.name}{suffix}")
        assert 400 <= response.status_code < 500, (method, suffix)
        assert SENTINEL not in response.content
    assert sentinel.read_bytes() == SENTINEL and link.is_symlink()


BAD_NAMES = ["../x.png", "/etc/passwd", "a\x00.png", "sentinel.png", "..\\x.png", ""]


@pytest.mark.parametrize(
    "path", ["/images/delete", "/images/star", "/images/unstar", "/board_images/batch", "/board_images/batch/delete"]
)
def test_lists_of_names_with_one_of_another_shape_are_refused_whole(
    server: LiveServer, client: httpx.Client, path: str
) -> None:
    board_id = client.post("/boards/", params={"board_name": "b"}).json()["board_id"]
    good = upload(client)["image_name"]
    on_board = upload(client, board_id=board_id)["image_name"]
    for bad in BAD_NAMES:
        response = client.post(path, json={"board_id": board_id, "image_names": [good, on_board, bad]})
        assert response.status_code == 422, response.text
        assert repr(bad) in response.json()["detail"]
    after = {image["image_name"]: image for image in get_json(client, "/images/")["items"]}
    assert after[good]["starred"] is False and after[good]["board_id"] is None
    assert after[on_board]["board_id"] == board_id
    assert files_on_disk(server) == image_files(good) | image_files(on_board)


def test_single_names_in_bodies_are_checked(client: httpx.Client) -> None:
    board_id = client.post("/boards/", params={"board_name": "b"}).json()["board_id"]
    for bad in BAD_NAMES:
        added = client.post("/board_images/", json={"board_id": board_id, "image_name": bad})
        removed = client.request("DELETE", "/board_images/", json={"image_name": bad})
        for response in (added, removed):
            assert response.status_code == 422, response.text
            assert repr(bad) in response.json()["detail"]
