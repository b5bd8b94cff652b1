"""Start-up after a crash: the invoker recovers the interrupted item and clears what the dead process left on disk."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from PIL import Image
from tests.conftest import StartServices
from tests.helpers import graph_json, wait_for

from nodeloom.app.invocations.image import ImageOutput
from nodeloom.app.services.config.config_default import load_config
from nodeloom.app.services.image_records.image_records_common import ImageCategory, ImageListQuery, ResourceOrigin
from nodeloom.app.services.invocation_services import build_services
from nodeloom.app.services.invoker import Invoker
from nodeloom.app.services.session_queue.session_queue_common import DEFAULT_QUEUE_ID, Batch
from nodeloom.app.services.shared.invocation_context import InvocationContextBuilder

IMAGE_NODES = ("one", "two", "three")


def crash_after_two_images(root: Path) -> tuple[int, list[str], str]:
    """Runs two of a session's three image nodes in process, saving its state after the first only, makes an image
    the way a crash between file and record leaves one, and 'dies' (database closed, nothing stopped).

    Returns the item's id, the images its two nodes made (in order), and the name of the image without a record.
    """
    services = build_services(load_config(root))
    nodes = [{"id": n, "type": "blank_image", "width": 8, "height": 8, "use_cache": False} for n in IMAGE_NODES]
    batch = Batch.model_validate({"graph": graph_json(nodes)})
    (item_id,) = services.session_queue.enqueue_batch(DEFAULT_QUEUE_ID, batch, prepend=False).item_ids
    item = services.session_queue.dequeue("crashed")
    assert item is not None and item.item_id == item_id
    contexts = InvocationContextBuilder(
        services.events,
        services.config,
        services.images,
        services.boards,
        services.tensors,
        services.conditioning,
        services.model_manager,
    )
    made = []
    for save_state in (True, False):
        node = item.session.next()
        assert node is not None
        output = node.invoke_internal(contexts.build(item, node, lambda: False), services.invocation_cache)
        assert isinstance(output, ImageOutput)
        made.append(output.image.image_name)
        item.session.complete(node.id, output)
        if save_state:
            services.session_queue.set_queue_item_session(item_id, item.session)
    orphan = services.images.create(Image.new("RGB", (8, 8)), ResourceOrigin.INTERNAL, ImageCategory.GENERAL)
    with services.database.transaction() as cursor:
        cursor.execute("DELETE FROM images WHERE image_name = ?", (orphan.image_name,))
    outputs = services.config.outputs_path
    for temporary in (f"images/.{uuid.uuid4()}.png.a1.tmp", f"tensors/.tensor_{uuid.uuid4()}.pt.b2.tmp"):
        (outputs / temporary).write_bytes(b"a write that died")
    services.database.close()
    return item_id, made, orphan.image_name


def files_under(folder: Path) -> set[str]:
    return {path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file()}


@pytest.mark.parametrize("requeue", [False, True])
def test_start_up_clears_what_a_crash_left(start_services: StartServices, tmp_path: Path, requeue: bool) -> None:
    root = tmp_path / "root"
    item_id, (first, second), orphan = crash_after_two_images(root)

    services, _ = start_services(root, requeue_interrupted=requeue)

    def finished() -> bool:
        return services.session_queue.get_queue_item(item_id).status in ("completed", "failed")

    wait_for(finished, what="the item to finish")
    outputs = services.config.outputs_path
    quarantined = {f"images/quarantine/{orphan}", f"images/quarantine/{orphan.removesuffix('.png')}.webp"}
    assert quarantined <= files_under(outputs)
    assert not [name for name in files_under(outputs) if name.endswith(".tmp")]
    item = services.session_queue.get_queue_item(item_id)
    records = services.images.get_many(ImageListQuery(limit=100)).items
    if requeue:
        # The first image is in the saved session and is kept; the second node runs again and makes a new one.
        assert item.status == "completed"
        prepared = [p for source in IMAGE_NODES for p in item.session.source_prepared_mapping[source]]
        assert sorted(record.node_id or "" for record in records) == sorted(prepared)
        names = {record.image_name for record in records}
        assert first in names and second not in names
    else:
        assert (item.status, item.error_type) == ("failed", "Interrupted")
        assert records == []
    assert services.images.check_consistency().is_consistent


@pytest.mark.parametrize("requeue", [False, True])
def test_a_clean_stop_clears_the_images_of_the_run_it_cut_short(
    start_services: StartServices, tmp_path: Path, requeue: bool
) -> None:
    services, _ = start_services(tmp_path / "root", requeue_interrupted=requeue, save_state_after_s=0)
    nodes = [
        {"id": "image", "type": "blank_image", "width": 8, "height": 8, "use_cache": False},
        {"id": "wait", "type": "test_wait", "seconds": 30},
    ]
    batch = Batch.model_validate({"graph": graph_json(nodes)})
    (item_id,) = services.session_queue.enqueue_batch(DEFAULT_QUEUE_ID, batch, prepend=False).item_ids
    # The image node is done once the saved session records it (save_state_after_s=0 saves after every node): the
    # stop then cuts the wait node, and the image belongs to a node that ran.
    wait_for(lambda: services.session_queue.get_queue_item(item_id).session.executed, what="the image node to run")

    Invoker(services).stop()

    reopened = build_services(load_config(tmp_path / "root"))
    try:
        item = reopened.session_queue.get_queue_item(item_id)
        names = [record.image_name for record in reopened.images.get_many(ImageListQuery(limit=10)).items]
        if requeue:
            # The image node is recorded in the saved session, so the run that resumes keeps its image.
            assert item.status == "pending"
            assert len(names) == 1
        else:
            assert (item.status, item.error_type) == ("failed", "Interrupted")
            assert names == []
        assert reopened.images.check_consistency().is_consistent
    finally:
        reopened.database.close()
