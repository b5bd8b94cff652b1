from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from tests.app.api.image_api_helpers import upload
from tests.conftest import LiveServer

StartServer = Callable[..., LiveServer]


@pytest.fixture
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{server.url}/api/v1", timeout=30) as c:
        yield c


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def create_board(client: httpx.Client, name: str) -> str:
    board_id: str = ok(client.post("/boards/", params={"board_name": name}), 201)["board_id"]
    return board_id


def board(client: httpx.Client, board_id: str) -> dict[str, Any]:
    found: dict[str, Any] = ok(client.get(f"/boards/{board_id}"))
    return found


def board_of(client: httpx.Client, image_name: str) -> str | None:
    board_id: str | None = ok(client.get(f"/images/i/{image_name}"))["board_id"]
    return board_id


def test_create_get_and_list_with_counts_and_covers(client: httpx.Client) -> None:
    created = ok(client.post("/boards/", params={"board_name": "Landscapes"}), 201)
    assert created["board_name"] == "Landscapes" and created["archived"] is False
    assert (created["image_count"], created["cover_image_name"]) == (0, None)
    assert board(client, created["board_id"]) == created

    full = created["board_id"]
    empty = create_board(client, "Empty")
    older = upload(client, board_id=full)["image_name"]
    newer = upload(client, board_id=full)["image_name"]
    upload(client, board_id=full, is_intermediate=True)
    upload(client)

    # Intermediate images are not counted, and the cover is the newest image shown in a gallery.
    assert (board(client, full)["image_count"], board(client, full)["cover_image_name"]) == (2, newer)
    page = ok(client.get("/boards/"))
    assert (page["total"], page["offset"], page["limit"]) == (2, 0, 10)
    assert [(b["board_id"], b["image_count"], b["cover_image_name"]) for b in page["items"]] == [
        (empty, 0, None),
        (full, 2, newer),
    ]
    second = ok(client.get("/boards/", params={"offset": 1, "limit": 1}))
    assert [b["board_id"] for b in second["items"]] == [full] and second["total"] == 2
    every = ok(client.get("/boards/", params={"all": True}))
    assert [b["board_id"] for b in every] == [empty, full]
    assert older in ok(client.get(f"/boards/{full}/image_names"))


def test_board_names_are_checked(client: httpx.Client) -> None:
    for name in ("", "   ", "x" * 301):
        response = client.post("/boards/", params={"board_name": name})
        assert response.status_code == 422, name
        assert "visible character" in response.json()["detail"]
    board_id = create_board(client, "ok")
    assert client.patch(f"/boards/{board_id}", json={"board_name": " "}).status_code == 422
    assert client.patch(f"/boards/{board_id}", json={"colour": "red"}).status_code == 422
    assert ok(client.get("/boards/"))["total"] == 1


def test_rename_and_archive(client: httpx.Client) -> None:
    board_id = create_board(client, "Draft")
    renamed = ok(client.patch(f"/boards/{board_id}", json={"board_name": "Final"}))
    assert renamed["board_name"] == "Final" and renamed["archived"] is False
    assert renamed["updated_at"] >= renamed["created_at"]
    archived = ok(client.patch(f"/boards/{board_id}", json={"archived": True}))
    assert archived["archived"] is True and archived["board_name"] == "Final"
    assert ok(client.get("/boards/"))["items"] == []
    assert ok(client.get("/boards/", params={"all": True})) == []
    assert [b["board_id"] for b in ok(client.get("/boards/", params={"include_archived": True}))["items"]] == [board_id]
    ok(client.patch(f"/boards/{board_id}", json={"archived": False}))
    assert ok(client.get("/boards/"))["total"] == 1


def test_unknown_board_is_404(client: httpx.Client) -> None:
    image = upload(client)["image_name"]
    responses = [
        client.get("/boards/no-such-board"),
        client.patch("/boards/no-such-board", json={"board_name": "x"}),
        client.delete("/boards/no-such-board"),
        client.delete("/boards/no-such-board", params={"include_images": True}),
        client.get("/boards/no-such-board/image_names"),
        client.post("/board_images/", json={"board_id": "no-such-board", "image_name": image}),
        client.post("/board_images/batch", json={"board_id": "no-such-board", "image_names": [image]}),
    ]
    for response in responses:
        assert response.status_code == 404, response.request.url
        assert "no-such-board" in response.json()["detail"]
    assert board_of(client, image) is None
    assert client.get(f"/images/i/{image}/full").status_code == 200


def test_add_move_and_remove_an_image(client: httpx.Client) -> None:
    first, second = create_board(client, "first"), create_board(client, "second")
    image = upload(client)["image_name"]

    added = ok(client.post("/board_images/", json={"board_id": first, "image_name": image}), 201)
    assert added == {"board_id": first, "added_image_names": [image]}
    assert board_of(client, image) == first
    assert ok(client.get(f"/boards/{first}/image_names")) == [image]

    # An image is on one board at most: adding it to another moves it.
    ok(client.post("/board_images/", json={"board_id": second, "image_name": image}), 201)
    assert board_of(client, image) == second
    assert ok(client.get(f"/boards/{first}/image_names")) == []
    assert (board(client, first)["image_count"], board(client, second)["image_count"]) == (0, 1)

    removed = ok(client.request("DELETE", "/board_images/", json={"image_name": image}))
    assert removed == {"removed_image_names": [image]}
    assert board_of(client, image) is None
    assert ok(client.get(f"/boards/{second}/image_names")) == []
    again = ok(client.request("DELETE", "/board_images/", json={"image_name": image}))
    assert again == {"removed_image_names": []}


def test_unknown_image_on_a_board_route_is_404(client: httpx.Client) -> None:
    board_id = create_board(client, "b")
    unknown = f"{uuid.uuid4()}.png"
    for response in (
        client.post("/board_images/", json={"board_id": board_id, "image_name": unknown}),
        client.request("DELETE", "/board_images/", json={"image_name": unknown}),
    ):
        assert response.status_code == 404
        assert unknown in response.json()["detail"]


def test_batch_add_and_remove(client: httpx.Client) -> None:
    first, second = create_board(client, "first"), create_board(client, "second")
    images = [upload(client)["image_name"] for _ in range(3)]
    elsewhere = upload(client, board_id=second)["image_name"]
    unknown = f"{uuid.uuid4()}.png"

    added = ok(
        client.post("/board_images/batch", json={"board_id": first, "image_names": [*images, unknown, elsewhere]}),
        201,
    )
    assert added == {"board_id": first, "added_image_names": [*images, elsewhere]}
    assert sorted(ok(client.get(f"/boards/{first}/image_names"))) == sorted([*images, elsewhere])
    assert board(client, second)["image_count"] == 0

    loose = upload(client)["image_name"]
    removed = ok(
        client.post("/board_images/batch/delete", json={"image_names": [images[0], unknown, loose, images[1]]})
    )
    assert removed == {"removed_image_names": [images[0], images[1]]}
    assert sorted(ok(client.get(f"/boards/{first}/image_names"))) == sorted([images[2], elsewhere])
    assert board_of(client, images[0]) is None


def test_delete_a_board_keeps_its_images_unless_asked(server: LiveServer, client: httpx.Client) -> None:
    board_id = create_board(client, "keep")
    images = [upload(client, board_id=board_id)["image_name"] for _ in range(2)]
    result = ok(client.delete(f"/boards/{board_id}"))
    assert result["board_id"] == board_id and result["deleted_images"] == []
    assert sorted(result["deleted_board_images"]) == sorted(images)
    assert client.get(f"/boards/{board_id}").status_code == 404
    for image in images:
        assert board_of(client, image) is None
        assert client.get(f"/images/i/{image}/full").status_code == 200
    on_no_board = ok(client.get("/images/", params={"board_id": "none"}))["items"]
    assert sorted(image["image_name"] for image in on_no_board) == sorted(images)


def test_delete_a_board_with_its_images(server: LiveServer, client: httpx.Client) -> None:
    board_id = create_board(client, "drop")
    other = create_board(client, "other")
    images = [upload(client, board_id=board_id)["image_name"] for _ in range(2)]
    kept = [upload(client)["image_name"], upload(client, board_id=other)["image_name"]]
    result = ok(client.delete(f"/boards/{board_id}", params={"include_images": True}))
    assert sorted(result["deleted_images"]) == sorted(images) == sorted(result["deleted_board_images"])
    folder = server.config.outputs_path / "images"
    for image in images:
        assert client.get(f"/images/i/{image}").status_code == 404
        assert not (folder / image).exists()
        assert not (folder / "thumbnails" / image.replace(".png", ".webp")).exists()
    assert sorted(image["image_name"] for image in ok(client.get("/images/"))["items"]) == sorted(kept)
    assert [b["board_id"] for b in ok(client.get("/boards/"))["items"]] == [other]
    assert board(client, other)["image_count"] == 1
