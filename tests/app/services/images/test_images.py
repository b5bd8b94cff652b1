from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from PIL import Image, ImageChops
from tests.app.services.image_stack import ImageStack
from tests.app.services.image_writer import ImageWriter
from tests.helpers import wait_for

from nodeloom.app.services.board_records.board_records_common import BoardRecordNotFoundError
from nodeloom.app.services.events.events_common import ImageCreatedEvent
from nodeloom.app.services.image_files.image_files_common import ImageFileSaveError
from nodeloom.app.services.image_records.image_records_common import (
    ImageCategory,
    ImageListQuery,
    ImageRecordChanges,
    ImageRecordNotFoundError,
    ResourceOrigin,
)
from nodeloom.app.services.names.names_common import InvalidImageNameError
from nodeloom.app.services.names.names_default import SimpleNameService
from nodeloom.app.services.session_queue.session_queue_common import QUEUE_ITEM_STATUS, SessionQueueItem
from nodeloom.app.services.shared.graph import Graph, GraphExecutionState


def thumbnail_of(name: str) -> str:
    return f"images/thumbnails/{name.removesuffix('.png')}.webp"


def test_create_writes_file_thumbnail_record_and_board_link(stack: ImageStack) -> None:
    board = stack.boards.create("Board").board_id
    image = Image.new("RGBA", (6, 4), (10, 20, 30, 200))
    dto = stack.images.create(
        image,
        ResourceOrigin.INTERNAL,
        ImageCategory.GENERAL,
        session_id="session-1",
        node_id="node-1",
        board_id=board,
        metadata={"seed": 7},
        workflow='{"name": "wf"}',
        graph='{"nodes": {}, "edges": []}',
    )
    assert (dto.width, dto.height, dto.board_id, dto.session_id, dto.node_id) == (6, 4, board, "session-1", "node-1")
    assert dto.has_workflow is True
    assert dto.image_url == f"/api/v1/images/i/{dto.image_name}/full"
    assert dto.thumbnail_url == f"/api/v1/images/i/{dto.image_name}/thumbnail"
    assert stack.files_on_disk() == {f"images/{dto.image_name}", thumbnail_of(dto.image_name)}
    assert stack.images.get_dto(dto.image_name) == dto
    assert ImageChops.difference(stack.images.get_pil_image(dto.image_name), image).getbbox() is None
    assert stack.images.get_path(dto.image_name) == stack.images_folder.resolve() / dto.image_name


def test_create_emits_image_created(stack: ImageStack) -> None:
    dto = stack.create(is_intermediate=True)
    event = wait_for(lambda: next((e for e in stack.delivered if isinstance(e, ImageCreatedEvent)), None))
    assert event.event_name == "image_created"
    assert (event.image_name, event.image_url, event.is_intermediate) == (dto.image_name, dto.image_url, True)
    assert (event.image_category, event.image_origin, event.board_id) == ("general", "internal", None)


def test_embedded_metadata_workflow_and_graph_round_trip(stack: ImageStack) -> None:
    metadata = {"prompt": "a lighthouse", "seed": 123, "cfg": 7.5, "loras": [{"name": "x", "weight": 0.5}]}
    dto = stack.images.create(
        Image.new("RGB", (4, 4)),
        ResourceOrigin.INTERNAL,
        ImageCategory.GENERAL,
        metadata=metadata,
        workflow='{"name": "wf"}',
        graph='{"id": "g"}',
    )
    assert stack.images.get_metadata(dto.image_name) == metadata
    assert stack.images.get_workflow(dto.image_name) == '{"name": "wf"}'
    assert stack.images.get_graph(dto.image_name) == '{"id": "g"}'
    bare = stack.create()
    assert bare.has_workflow is False
    assert (stack.images.get_metadata(bare.image_name), stack.images.get_workflow(bare.image_name)) == (None, None)


def test_a_failing_record_leaves_no_file(stack: ImageStack) -> None:
    with pytest.raises(BoardRecordNotFoundError):
        stack.create(board_id="no-such-board")
    assert stack.files_on_disk() == set()
    assert stack.image_records.get_all_names() == set()


def test_a_failing_file_write_leaves_no_record(stack: ImageStack, monkeypatch: pytest.MonkeyPatch) -> None:
    image = Image.new("RGB", (4, 4))

    def fail(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(image, "save", fail)
    with pytest.raises(ImageFileSaveError):
        stack.images.create(image, ResourceOrigin.INTERNAL, ImageCategory.GENERAL)
    assert stack.files_on_disk() == set()
    assert stack.image_records.get_all_names() == set()


def test_metadata_that_is_not_json_fails_before_anything_is_written(stack: ImageStack) -> None:
    with pytest.raises(TypeError):
        stack.images.create(
            Image.new("RGB", (4, 4)), ResourceOrigin.INTERNAL, ImageCategory.GENERAL, metadata={"x": object()}
        )
    assert stack.files_on_disk() == set()
    assert stack.image_records.get_all_names() == set()


def test_update_stars_recategorises_and_flags(stack: ImageStack) -> None:
    board = stack.boards.create("Board").board_id
    dto = stack.create(board_id=board)
    updated = stack.images.update(
        dto.image_name,
        ImageRecordChanges(starred=True, image_category=ImageCategory.CONTROL, is_intermediate=True),
    )
    assert (updated.starred, updated.image_category, updated.is_intermediate, updated.board_id) == (
        True,
        ImageCategory.CONTROL,
        True,
        board,
    )


def test_delete_leaves_no_file_record_or_link(stack: ImageStack) -> None:
    board = stack.boards.create("Board").board_id
    dto = stack.create(board_id=board)
    kept = stack.create()
    stack.images.delete(dto.image_name)
    assert stack.image_records.get_all_names() == {kept.image_name}
    assert stack.files_on_disk() == {f"images/{kept.image_name}", thumbnail_of(kept.image_name)}
    assert stack.boards.get_dto(board).image_count == 0
    with pytest.raises(ImageRecordNotFoundError):
        stack.images.delete(dto.image_name)
    with pytest.raises(ImageRecordNotFoundError):
        stack.images.get_dto(dto.image_name)


@pytest.mark.parametrize("name", ["../nodeloom.db", "/etc/passwd", "x\x00.png", "images/../../nodeloom.db"])
def test_bad_names_are_refused_everywhere(stack: ImageStack, name: str) -> None:
    # What a traversal would reach: the SQLite file, or a stand-in where the database is elsewhere.
    (stack.root / "nodeloom.db").touch()
    dto = stack.create()
    for attempt in (
        lambda: stack.images.get_dto(name),
        lambda: stack.images.get_record(name),
        lambda: stack.images.get_pil_image(name),
        lambda: stack.images.get_metadata(name),
        lambda: stack.images.get_path(name),
        lambda: stack.images.update(name, ImageRecordChanges(starred=True)),
        lambda: stack.images.delete(name),
        lambda: stack.images.delete_many([dto.image_name, name]),
    ):
        with pytest.raises(InvalidImageNameError):
            attempt()
    assert (stack.root / "nodeloom.db").exists()
    assert stack.image_records.get_all_names() == {dto.image_name}


def test_delete_many(stack: ImageStack) -> None:
    dtos = [stack.create() for _ in range(3)]
    unknown = SimpleNameService().create_image_name()
    deleted = stack.images.delete_many([dtos[0].image_name, unknown, dtos[2].image_name])
    assert deleted == [dtos[0].image_name, dtos[2].image_name]
    assert stack.image_records.get_all_names() == {dtos[1].image_name}
    assert stack.images.check_consistency().is_consistent


def test_delete_intermediates_leaves_no_orphans(stack: ImageStack) -> None:
    board = stack.boards.create("Board").board_id
    for _ in range(3):
        stack.create(is_intermediate=True)
    stack.create(is_intermediate=True, board_id=board)
    kept = stack.create(board_id=board)
    assert stack.images.get_intermediates_count() == 4

    assert stack.images.delete_intermediates() == 4
    assert stack.images.get_intermediates_count() == 0
    assert stack.image_records.get_all_names() == {kept.image_name}
    assert stack.files_on_disk() == {f"images/{kept.image_name}", thumbnail_of(kept.image_name)}
    assert stack.boards.get_all_image_names_for_board(board) == [kept.image_name]
    assert stack.images.delete_intermediates() == 0


def test_consistency_report_finds_both_kinds_of_orphan(stack: ImageStack) -> None:
    fine = stack.create()
    lost_file = stack.create()
    lost_record = stack.create()
    (stack.images_folder / lost_file.image_name).unlink()
    stack.image_records.delete(lost_record.image_name)

    report = stack.images.check_consistency()
    assert report.records_without_files == [lost_file.image_name]
    assert report.files_without_records == [lost_record.image_name]
    assert not report.is_consistent

    # Deleting either orphan clears it from the report.
    stack.images.delete(lost_file.image_name)
    stack.images.delete(lost_record.image_name)
    assert stack.images.check_consistency().is_consistent
    assert stack.image_records.get_all_names() == {fine.image_name}


def test_consistency_report_counts_a_lone_thumbnail(stack: ImageStack) -> None:
    dto = stack.create()
    stack.image_records.delete(dto.image_name)
    (stack.images_folder / dto.image_name).unlink()
    assert stack.images.check_consistency().files_without_records == [dto.image_name]


def interrupted_item(status: QUEUE_ITEM_STATUS, session_id: str, executed: set[str]) -> SessionQueueItem:
    """A queue item as start-up recovery leaves it: requeued (pending) or failed, with its saved session."""
    now = datetime.now(UTC)
    session = GraphExecutionState(id=session_id, graph=Graph(), executed=executed)
    return SessionQueueItem(
        item_id=1,
        queue_id="default",
        batch_id="b",
        session_id=session_id,
        status=status,
        session=session,
        created_at=now,
        updated_at=now,
    )


def session_image(stack: ImageStack, session_id: str, node_id: str, board_id: str | None = None) -> str:
    return stack.images.create(
        Image.new("RGB", (4, 4)), ResourceOrigin.INTERNAL, ImageCategory.GENERAL, session_id, node_id, board_id
    ).image_name


def test_leftovers_of_a_failed_item_are_all_its_images(stack: ImageStack) -> None:
    board = stack.boards.create("Board").board_id
    made = [session_image(stack, "crashed", "a"), session_image(stack, "crashed", "b", board)]
    other = session_image(stack, "other", "a")

    report = stack.images.remove_leftovers([interrupted_item("failed", "crashed", {"a", "b"})])
    assert sorted(report.interrupted_images) == sorted(made)  # in no particular order
    assert stack.image_records.get_all_names() == {other}
    assert stack.files_on_disk() == {f"images/{other}", thumbnail_of(other)}
    assert stack.boards.get_dto(board).image_count == 0


def test_a_requeued_item_keeps_the_images_of_the_nodes_its_saved_session_recorded(stack: ImageStack) -> None:
    recorded = session_image(stack, "resumed", "done")
    runs_again = session_image(stack, "resumed", "not-saved")
    other = session_image(stack, "other", "not-saved")

    report = stack.images.remove_leftovers([interrupted_item("pending", "resumed", {"done", "done-source"})])
    assert report.interrupted_images == [runs_again]
    assert stack.image_records.get_all_names() == {recorded, other}
    assert stack.images.check_consistency().is_consistent


def test_leftover_files_are_quarantined_and_records_without_files_kept(stack: ImageStack) -> None:
    fine = stack.create()
    lost_file = stack.create()
    no_record = stack.create()
    thumbnail_only = stack.create()
    (stack.images_folder / lost_file.image_name).unlink()
    for dto in (no_record, thumbnail_only):
        stack.image_records.delete(dto.image_name)
    (stack.images_folder / thumbnail_only.image_name).unlink()
    temporary = {f"images/.{fine.image_name}.abc.tmp", f"images/thumbnails/.{fine.image_name}.def.tmp"}
    for name in temporary:
        (stack.root / "outputs" / name).write_bytes(b"a write that died")

    report = stack.images.remove_leftovers([])
    assert report.temporary_files == 2
    assert report.interrupted_images == []
    assert report.quarantined == sorted([no_record.image_name, thumbnail_only.image_name])
    assert report.records_without_files == [lost_file.image_name]
    assert stack.image_records.get_all_names() == {fine.image_name, lost_file.image_name}
    assert stack.files_on_disk() == {
        f"images/{fine.image_name}",
        thumbnail_of(fine.image_name),
        thumbnail_of(lost_file.image_name),
        f"images/quarantine/{no_record.image_name}",
        thumbnail_of(no_record.image_name).replace("thumbnails", "quarantine"),
        thumbnail_of(thumbnail_only.image_name).replace("thumbnails", "quarantine"),
    }
    again = stack.images.remove_leftovers([])
    assert (again.temporary_files, again.quarantined, again.records_without_files) == (0, [], [lost_file.image_name])


def test_an_image_a_worker_is_recording_is_left_and_one_a_dead_worker_left_is_quarantined(stack: ImageStack) -> None:
    # Workers in other processes write images into the outputs folder, each file first and its record right after,
    # while an API server starts and clears what a crash left: it finds their files without records.
    recording, crashed = SimpleNameService().create_image_name(), SimpleNameService().create_image_name()
    worker = ImageWriter(stack.images_folder, recording, "record")
    ImageWriter(stack.images_folder, crashed, "record").kill()

    report = stack.images.remove_leftovers([])

    assert report.quarantined == [crashed]
    stack.image_records.save(recording, ResourceOrigin.INTERNAL, ImageCategory.GENERAL, 4, 4, has_workflow=False)
    assert worker.go_on() == "done"
    assert stack.images.check_consistency().is_consistent
    assert stack.images.get_pil_image(recording).getpixel((0, 0)) == (1, 2, 3)


def test_listing_returns_dtos_with_their_boards(stack: ImageStack) -> None:
    board = stack.boards.create("Board").board_id
    on_board = stack.create(board_id=board)
    loose = stack.create(category=ImageCategory.MASK)
    page = stack.images.get_many(ImageListQuery(limit=10))
    assert page.total == 2
    assert [(i.image_name, i.board_id) for i in page.items] == [(loose.image_name, None), (on_board.image_name, board)]
    assert [i.image_name for i in stack.images.get_many(ImageListQuery(categories=[ImageCategory.MASK])).items] == [
        loose.image_name
    ]
    assert json.loads(page.model_dump_json())["items"][1]["board_id"] == board
