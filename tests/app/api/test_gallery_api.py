"""The routes InvokeAI 6.x's gallery relies on, over real HTTP against a live server, with a real socket.io client."""

from __future__ import annotations

import http.client
import io
import os
import subprocess
import sys
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import socketio
from tests.app.api.image_api_helpers import encode, upload
from tests.conftest import LiveServer
from tests.helpers import graph_json, wait_for

StartServer = Callable[..., LiveServer]


@pytest.fixture
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{server.url}/api/v1", timeout=30) as c:
        yield c


def get_json(client: httpx.Client, path: str, **params: Any) -> Any:
    response = client.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def make_board(client: httpx.Client, name: str = "board") -> str:
    board_id: str = client.post("/boards/", params={"board_name": name}).json()["board_id"]
    return board_id


def star(client: httpx.Client, *image_names: str) -> None:
    assert client.post("/images/star", json={"image_names": list(image_names)}).status_code == 200


def raw_get(server: LiveServer, path: str) -> tuple[int, bytes]:
    """GETs `path` exactly as written: httpx would resolve its dot segments first."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


# --- Names, DTOs by name, URLs -------------------------------------------------------------------------------


def test_names_come_starred_first_in_the_order_asked(client: httpx.Client) -> None:
    board = make_board(client)
    made = [upload(client, board_id=board)["image_name"] for _ in range(5)]
    upload(client)
    upload(client, board_id=board, is_intermediate=True)
    star(client, made[1], made[3])
    gallery = {"board_id": board, "is_intermediate": False}

    assert get_json(client, "/images/names", **gallery) == {
        "image_names": [made[3], made[1], made[4], made[2], made[0]],
        "starred_count": 2,
        "total_count": 5,
    }
    assert get_json(client, "/images/names", **gallery, order_dir="ASC")["image_names"] == [
        made[1],
        made[3],
        made[0],
        made[2],
        made[4],
    ]
    oldest_first = get_json(client, "/images/names", **gallery, order_dir="ASC", starred_first=False)
    assert (oldest_first["image_names"], oldest_first["starred_count"]) == (made, 0)
    assert len(get_json(client, "/images/names", board_id="none")["image_names"]) == 1
    assert len(get_json(client, "/images/names")["image_names"]) == 7


def test_pages_come_in_the_order_asked(client: httpx.Client) -> None:
    board = make_board(client)
    made = [upload(client, board_id=board)["image_name"] for _ in range(4)]
    star(client, made[0])

    def page(**params: Any) -> list[str]:
        listing = get_json(client, "/images/", board_id=board, limit=3, **params)
        assert listing["total"] == 4
        return [image["image_name"] for image in listing["items"]]

    assert page() == [made[0], made[3], made[2]]
    assert page(offset=3) == [made[1]]
    assert page(starred_first=False) == [made[3], made[2], made[1]]
    assert page(starred_first=False, order_dir="ASC", offset=1) == made[1:]
    assert page(order_dir="ASC") == [made[0], made[1], made[2]]
    assert client.get("/images/", params={"order_dir": "sideways"}).status_code == 422


def test_names_by_search_term(client: httpx.Client) -> None:
    made = [upload(client)["image_name"] for _ in range(3)]
    star(client, made[0])
    created = get_json(client, f"/images/i/{made[1]}")["created_at"]

    assert get_json(client, "/images/names", search_term=made[2][:8])["image_names"] == [made[2]]
    assert get_json(client, "/images/names", search_term=created)["image_names"] == [made[1]]
    assert get_json(client, "/images/names", search_term=created[:10]) == {
        "image_names": [made[0], made[2], made[1]],
        "starred_count": 1,
        "total_count": 3,
    }
    assert get_json(client, "/images/names", search_term="%")["total_count"] == 0


def test_names_refuse_an_unknown_order_or_category(client: httpx.Client) -> None:
    for params in ({"order_dir": "sideways"}, {"categories": "pictures"}, {"starred_first": "maybe"}):
        response = client.get("/images/names", params=params)
        assert response.status_code == 422, params
        assert next(iter(params)) in response.text


def test_images_by_names_keeps_the_order_and_skips_unknown_names(client: httpx.Client) -> None:
    made = [upload(client)["image_name"] for _ in range(3)]
    unknown = f"{uuid.uuid4()}.png"

    response = client.post("/images/images_by_names", json={"image_names": [made[2], unknown, made[0]]})

    assert response.status_code == 200, response.text
    dtos = response.json()
    assert [dto["image_name"] for dto in dtos] == [made[2], made[0]]
    assert dtos[0] == get_json(client, f"/images/i/{made[2]}")


@pytest.mark.parametrize("bad", ["../x.png", "/etc/passwd", "a\x00.png", "sentinel.png", ""])
def test_images_by_names_refuses_a_list_with_a_name_of_another_shape(client: httpx.Client, bad: str) -> None:
    good = upload(client)["image_name"]
    response = client.post("/images/images_by_names", json={"image_names": [good, bad]})
    assert response.status_code == 422
    assert "not an image name" in response.json()["detail"]


def test_urls_of_an_image(client: httpx.Client) -> None:
    dto = upload(client)
    name = dto["image_name"]

    assert get_json(client, f"/images/i/{name}/urls") == {
        "image_name": name,
        "image_url": dto["image_url"],
        "thumbnail_url": dto["thumbnail_url"],
    }
    assert client.get(get_json(client, f"/images/i/{name}/urls")["thumbnail_url"].removeprefix("/api/v1")).is_success
    assert client.get(f"/images/i/{uuid.uuid4()}.png/urls").status_code == 404
    assert client.get("/images/i/sentinel.png/urls").status_code == 422


# --- Images on no board --------------------------------------------------------------------------------------


def test_delete_uncategorized_deletes_the_images_on_no_board(server: LiveServer, client: httpx.Client) -> None:
    board = make_board(client)
    on_board = upload(client, board_id=board)["image_name"]
    loose = {upload(client)["image_name"], upload(client, is_intermediate=True)["image_name"]}
    wait_for(lambda: server.services.session_processor.get_status().current_item_id is None, what="an idle processor")

    response = client.delete("/images/uncategorized")

    assert response.status_code == 200, response.text
    result = response.json()
    assert set(result["deleted_images"]) == loose and result["affected_boards"] == ["none"]
    assert get_json(client, "/images/names")["image_names"] == [on_board]
    folder = server.config.outputs_path / "images"
    assert {path.name for path in folder.glob("*.png")} == {on_board}
    assert client.delete("/images/uncategorized").json() == {"deleted_images": [], "affected_boards": []}


def test_delete_uncategorized_is_refused_while_a_session_runs(server: LiveServer, client: httpx.Client) -> None:
    loose = upload(client)["image_name"]
    enqueued = client.post(
        "/queue/default/enqueue_batch",
        json={"batch": {"graph": graph_json([{"id": "wait", "type": "test_wait", "seconds": 30}])}},
    )
    assert enqueued.status_code == 200, enqueued.text
    item_id = wait_for(lambda: server.services.session_processor.get_status().current_item_id, what="a running item")
    response = client.delete("/images/uncategorized")
    assert response.status_code == 409
    assert client.get(f"/images/i/{loose}").status_code == 200
    client.put(f"/queue/default/i/{item_id}/cancel")


# --- Bulk download -------------------------------------------------------------------------------------------


class BulkDownloadEvents:
    """A socket.io client in the bulk download room, recording what it receives."""

    def __init__(self, server: LiveServer) -> None:
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.sio = socketio.Client()
        self.sio.on("*", lambda name, data: self.received.append((name, data)))
        self.sio.connect(server.url, socketio_path="/ws/socket.io", transports=["websocket"])
        assert self.sio.call("subscribe_bulk_download", {"bulk_download_id": "default"}, timeout=10) == {
            "bulk_download_id": "default"
        }

    def of(self, archive_name: str) -> list[tuple[str, dict[str, Any]]]:
        return [(name, data) for name, data in self.received if data.get("bulk_download_item_name") == archive_name]

    def wait_end(self, archive_name: str) -> list[tuple[str, dict[str, Any]]]:
        ends = ("bulk_download_complete", "bulk_download_error")
        wait_for(lambda: any(name in ends for name, _ in self.of(archive_name)), what=f"the end of {archive_name}")
        return self.of(archive_name)


@pytest.fixture
def events(server: LiveServer) -> Iterator[BulkDownloadEvents]:
    recorder = BulkDownloadEvents(server)
    yield recorder
    recorder.sio.disconnect()


def archives(server: LiveServer) -> list[str]:
    return sorted(path.name for path in (server.config.outputs_path / "bulk_downloads").iterdir())


def start_download(client: httpx.Client, **body: Any) -> str:
    response = client.post("/images/download", json=body)
    assert response.status_code == 202, response.text
    assert response.json()["response"] is None
    name: str = response.json()["bulk_download_item_name"]
    return name


def fetch_zip(client: httpx.Client, archive_name: str) -> dict[str, bytes]:
    response = client.get(f"/images/download/{archive_name}")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def test_bulk_download_zips_exactly_the_named_images_and_is_removed_once_fetched(
    server: LiveServer, client: httpx.Client, events: BulkDownloadEvents
) -> None:
    named = [upload(client, data=encode(color=color))["image_name"] for color in ("red", "green")]
    mask = upload(client, image_category="mask")["image_name"]
    upload(client)

    archive_name = start_download(client, image_names=[*named, mask])

    item_id = archive_name.removesuffix(".zip")
    ids = {"bulk_download_id": "default", "bulk_download_item_id": item_id, "bulk_download_item_name": archive_name}
    received = events.wait_end(archive_name)
    assert [name for name, _ in received] == ["bulk_download_started", "bulk_download_complete"]
    for _, data in received:
        assert {key: data[key] for key in ids} == ids and isinstance(data["timestamp"], int)
    assert archives(server) == [archive_name]

    files = fetch_zip(client, archive_name)

    folder = server.config.outputs_path / "images"
    assert files == {
        **{f"user/{name}": (folder / name).read_bytes() for name in named},
        f"mask/{mask}": (folder / mask).read_bytes(),
    }
    wait_for(lambda: archives(server) == [], what="the archive's removal")
    assert client.get(f"/images/download/{archive_name}").status_code == 404


def test_bulk_download_of_a_board_and_of_the_images_on_none(
    server: LiveServer, client: httpx.Client, events: BulkDownloadEvents
) -> None:
    board = make_board(client)
    on_board = {upload(client, board_id=board)["image_name"] for _ in range(2)}
    loose = upload(client)["image_name"]

    for board_id, expected in ((board, on_board), ("none", {loose})):
        archive_name = start_download(client, board_id=board_id)
        assert events.wait_end(archive_name)[-1][0] == "bulk_download_complete"
        assert {Path(name).name for name in fetch_zip(client, archive_name)} == expected

    assert client.post("/images/download", json={"board_id": "no-such-board"}).status_code == 404


def test_bulk_download_of_an_unknown_image_fails_with_its_error_event(
    server: LiveServer, client: httpx.Client, events: BulkDownloadEvents
) -> None:
    known = upload(client)["image_name"]
    unknown = f"{uuid.uuid4()}.png"

    archive_name = start_download(client, image_names=[known, unknown])

    received = events.wait_end(archive_name)
    assert [name for name, _ in received] == ["bulk_download_started", "bulk_download_error"]
    assert unknown in received[-1][1]["error"]
    assert archives(server) == []
    assert client.get(f"/images/download/{archive_name}").status_code == 404


def test_bulk_download_refuses_requests_without_images_or_with_names_of_another_shape(
    server: LiveServer, client: httpx.Client
) -> None:
    bodies: list[dict[str, Any]] = [{}, {"image_names": []}, {"image_names": None, "board_id": None}]
    for body in bodies:
        response = client.post("/images/download", json=body)
        assert response.status_code == 400, body
        assert "image names or a board id" in response.json()["detail"]
    for bad in ("../x.png", "../../nodeloom.yaml", "/etc/passwd", "sentinel.png"):
        response = client.post("/images/download", json={"image_names": [bad]})
        assert response.status_code == 422, bad
    assert archives(server) == []


def test_archives_are_served_by_name_only(server: LiveServer, client: httpx.Client) -> None:
    sentinel = server.config.root.parent / f"{uuid.uuid4()}.zip"
    sentinel.write_bytes(b"SENTINEL")
    image = upload(client)["image_name"]
    link = server.config.outputs_path / "bulk_downloads" / f"{uuid.uuid4()}.zip"
    link.symlink_to(sentinel)

    paths = [
        f"/api/v1/images/download/{link.name}",
        f"/api/v1/images/download/..%2F..%2F..%2F{sentinel.name}",
        f"/api/v1/images/download/../../../{sentinel.name}",
        f"/api/v1/images/download/..%2Fimages%2F{image}",
        f"/api/v1/images/download/{image}",
        f"/api/v1/images/download/{sentinel.stem.upper()}.zip",
        f"/api/v1/images/download/{sentinel.stem}.zip%00",
        "/api/v1/images/download/nodeloom.yaml",
    ]
    for path in paths:
        status, content = raw_get(server, path)
        assert 400 <= status < 500, (path, status)
        assert b"SENTINEL" not in content and not content.startswith(b"\x89PNG"), path
    assert raw_get(server, f"/api/v1/images/download/{link.name}")[0] == 422
    assert raw_get(server, "/api/v1/images/download/nodeloom.yaml")[0] == 422
    assert sentinel.read_bytes() == b"SENTINEL" and link.is_symlink()


def test_archives_are_removed_after_their_age_and_at_start_up(live_server: StartServer) -> None:
    server = live_server(bulk_download_max_age_s=0.5)
    with httpx.Client(base_url=f"{server.url}/api/v1", timeout=30) as client:
        image = upload(client)["image_name"]
        first = start_download(client, image_names=[image])
        wait_for(lambda: archives(server) == [first], what="the first archive")
        wait_for(lambda: client.get(f"/images/download/{first}").status_code == 404, what="its expiry")
        second = start_download(client, image_names=[image])
        wait_for(lambda: archives(server) == [second], what="the second archive")
    server.stop()
    leftover = server.config.outputs_path / "bulk_downloads" / f"{uuid.uuid4()}.zip"
    leftover.write_bytes(b"left by a crash")

    again = LiveServer(server.config.root).start()
    try:
        assert archives(again) == []
    finally:
        again.stop()


# Another server's archive, made in a process of its own: its write stops midway until a line comes, then the
# archive stays held until stdin closes.
_ARCHIVER = """
import sys
from pathlib import Path
from nodeloom.app.services.shared.atomic_files import write_held

def write(file):
    file.write(b"PK")
    print("writing", flush=True)
    sys.stdin.readline()

write_held(Path(sys.argv[1]), write)
print("written", flush=True)
sys.stdin.read()
"""


def start_archiver(path: Path) -> subprocess.Popen[str]:
    """`_ARCHIVER` writing `path`, once it holds its write midway."""
    archiver = subprocess.Popen(
        [sys.executable, "-c", _ARCHIVER, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert archiver.stdout is not None
    assert archiver.stdout.readline().strip() == "writing"
    return archiver


def finish_archive(archiver: subprocess.Popen[str]) -> None:
    """Lets `archiver` write its archive whole, which it holds until its stdin closes."""
    assert archiver.stdin is not None and archiver.stdout is not None
    archiver.stdin.write("\n")
    archiver.stdin.flush()
    assert archiver.stdout.readline().strip() == "written"


def test_a_server_starting_and_stopping_on_the_same_root_leaves_the_archives_of_live_ones(
    live_server: StartServer,
) -> None:
    server = live_server()
    folder = server.config.outputs_path / "bulk_downloads"
    with httpx.Client(base_url=f"{server.url}/api/v1", timeout=30) as client:
        image = upload(client)["image_name"]
        made = start_download(client, image_names=[image])
        wait_for(lambda: archives(server) == [made], what="the archive")
        other_name = f"{uuid.uuid4()}.zip"
        archiver = start_archiver(folder / other_name)
        live = archives(server)
        assert len(live) == 2  # this server's archive and the other's temporary file
        # What a crash left: an archive and a cut-short write, held by no one.
        (folder / f"{uuid.uuid4()}.zip").write_bytes(b"left by a crash")
        (folder / f".{uuid.uuid4()}.zip.cut.tmp").write_bytes(b"PK")

        other = LiveServer(server.config.root).start()
        assert archives(server) == live
        finish_archive(archiver)
        other.stop()
        assert archives(server) == sorted([made, other_name])
        image_bytes = (server.config.outputs_path / "images" / image).read_bytes()
        assert fetch_zip(client, made) == {f"user/{image}": image_bytes}
        wait_for(lambda: archives(server) == [other_name], what="the fetched archive's removal")

        archiver.communicate("", timeout=30)
        LiveServer(server.config.root).start().stop()
        assert archives(server) == []


def test_expiry_removes_the_archives_of_any_server_and_no_write_under_way(live_server: StartServer) -> None:
    server = live_server(bulk_download_max_age_s=60)
    folder = server.config.outputs_path / "bulk_downloads"
    hour_ago = time.time() - 3600

    def expire(path: Path) -> None:
        os.utime(path, (hour_ago, hour_ago))

    other_name = f"{uuid.uuid4()}.zip"
    archiver = start_archiver(folder / other_name)
    (writing,) = folder.iterdir()
    expire(writing)
    crashed_old, crashed_new = (folder / f".{uuid.uuid4()}.zip.cut.tmp" for _ in range(2))
    for path in (crashed_old, crashed_new):
        path.write_bytes(b"PK")
    expire(crashed_old)
    with httpx.Client(base_url=f"{server.url}/api/v1", timeout=30) as client:
        # Any fetch removes what has expired first.
        assert client.get(f"/images/download/{uuid.uuid4()}.zip").status_code == 404
        assert sorted(folder.iterdir()) == sorted([writing, crashed_new])

        finish_archive(archiver)
        expire(folder / other_name)
        assert client.get(f"/images/download/{other_name}").status_code == 404
        assert list(folder.iterdir()) == [crashed_new]
    archiver.communicate("", timeout=30)


def test_bulk_downloads_past_their_limits_are_refused_naming_the_setting(live_server: StartServer) -> None:
    server = live_server(bulk_download_max_archives=2, bulk_download_max_images=2)
    with httpx.Client(base_url=f"{server.url}/api/v1", timeout=30) as client:
        board = make_board(client)
        images = [upload(client, board_id=board)["image_name"] for _ in range(3)]

        for body in ({"image_names": images}, {"board_id": board}):
            response = client.post("/images/download", json=body)
            assert response.status_code == 422, body
            assert "at most 2 images (bulk_download_max_images) and 3 were asked for" in response.json()["detail"]

        first = start_download(client, image_names=images[:2])
        second = start_download(client, image_names=images[2:])
        wait_for(lambda: archives(server) == sorted([first, second]), what="both archives")
        # Two archives wait to be fetched: a third job would make the folder hold more than allowed.
        response = client.post("/images/download", json={"image_names": images[:1]})
        assert response.status_code == 429
        assert "bulk_download_max_archives is 2" in response.json()["detail"]
        assert archives(server) == sorted([first, second])

        assert len(fetch_zip(client, first)) == 2
        wait_for(lambda: archives(server) == [second], what="the fetched archive's removal")
        third = start_download(client, image_names=images[:1])
        wait_for(lambda: archives(server) == sorted([second, third]), what="the third archive")
