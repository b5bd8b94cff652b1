"""The image service on a real SQLite file and a real outputs folder: one JSON object per measurement.

(a) save 1,000 512x512 images through `ImageService.create` (PNG with embedded texts, WEBP thumbnail, record,
each file fsynced); then the parts on their own, on the same images: the PNG encode, the thumbnail (resize and
WEBP encode) and the record, so the last two can be set against the first. (b) list a board of 10,000 images a
page at a time through `ImageService.get_many` (records, count and board ids). The last line sums up with
`images_per_s`, `thumbnail_and_record_vs_png` (target under 0.30), `all_overhead_vs_png` (everything that is not
the PNG encode: thumbnail, record, file writes, fsyncs) and `board_listing_p50_ms` (target under 20).
"""

from __future__ import annotations

import io
import json
import random
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from nodeloom.app.services.board_image_records.board_image_records_base import BoardImageRecordStorageBase
from nodeloom.app.services.board_records.board_records_base import BoardRecordStorageBase
from nodeloom.app.services.events.events_default import InProcessEventService
from nodeloom.app.services.image_files.image_files_common import EmbeddedText
from nodeloom.app.services.image_files.image_files_disk import encode_png, encode_thumbnail
from nodeloom.app.services.image_records.image_records_base import ImageRecordStorageBase
from nodeloom.app.services.image_records.image_records_common import ImageCategory, ImageListQuery, ResourceOrigin
from nodeloom.app.services.image_services import build_image_services
from nodeloom.app.services.images.images_base import ImageServiceABC
from nodeloom.app.services.names.names_default import SimpleNameService
from nodeloom.app.services.shared.database.database_sqlite import SqliteDatabase
from nodeloom.app.services.shared.database.migrations import MIGRATIONS
from nodeloom.app.services.shared.database.migrator import Migrator

SAVES = 1_000
BOARD_SIZE = 10_000
PAGE = 100
LISTINGS = 200
METADATA = {"prompt": "a lighthouse on a cliff at dusk, volumetric light", "seed": 1234, "steps": 30, "cfg": 7.5}
GRAPH = json.dumps({"id": "g", "nodes": {f"n{i}": {"id": f"n{i}", "type": "add"} for i in range(20)}, "edges": []})


@dataclass
class Stack:
    db: SqliteDatabase
    records: ImageRecordStorageBase
    board_records: BoardRecordStorageBase
    board_images: BoardImageRecordStorageBase
    images: ImageServiceABC


@contextmanager
def stack() -> Iterator[Stack]:
    with tempfile.TemporaryDirectory() as folder:
        db = SqliteDatabase(Path(folder) / "nodeloom.db")
        events = InProcessEventService()
        events.start()
        try:
            Migrator(db, MIGRATIONS).run()
            parts = build_image_services(db, Path(folder) / "outputs" / "images", events)
            yield Stack(db, parts.image_records, parts.board_records, parts.board_image_records, parts.images)
        finally:
            events.stop()
            db.close()


def generated_images(count: int) -> list[Image.Image]:
    """Smooth colour fields with grain, compressing about as a generated picture does (not as flat colour)."""
    images = []
    for i in range(count):
        red = Image.linear_gradient("L").rotate(i * 37 % 360).resize((512, 512))
        green = Image.radial_gradient("L").resize((512, 512))
        grain = Image.effect_noise((512, 512), 12 + i)
        blue = Image.blend(red, grain, 0.5)
        images.append(Image.merge("RGB", (red, Image.blend(green, grain, 0.2), blue)))
    return images


def seconds(action: Any, *args: Any) -> float:
    start = time.perf_counter()
    action(*args)
    return time.perf_counter() - start


def measure_saves(bench: Stack, images: list[Image.Image]) -> dict[str, Any]:
    board = bench.board_records.save("bench").board_id
    workload = [images[i % len(images)] for i in range(SAVES)]

    def save_all() -> None:
        for image in workload:
            bench.images.create(
                image, ResourceOrigin.INTERNAL, ImageCategory.GENERAL, board_id=board, metadata=METADATA, graph=GRAPH
            )

    total = seconds(save_all)

    texts = {EmbeddedText.metadata: json.dumps(METADATA), EmbeddedText.graph: GRAPH}
    png = seconds(lambda: [encode_png(image, io.BytesIO(), texts, compress_level=1) for image in workload])
    thumbnails = seconds(lambda: [encode_thumbnail(image, io.BytesIO()) for image in workload])
    names = SimpleNameService()

    def save_records() -> None:
        for _ in workload:
            name = names.create_image_name()
            with bench.db.transaction():
                bench.records.save(name, ResourceOrigin.INTERNAL, ImageCategory.GENERAL, 512, 512, has_workflow=False)
                bench.board_images.add_image_to_board(board, name)

    records = seconds(save_records)
    return {
        "measurement": "save_512x512",
        "images": SAVES,
        "total_s": round(total, 3),
        "images_per_s": round(SAVES / total, 1),
        "per_image_ms": round(total / SAVES * 1000, 3),
        "png_encode_ms": round(png / SAVES * 1000, 3),
        "thumbnail_ms": round(thumbnails / SAVES * 1000, 3),
        "record_ms": round(records / SAVES * 1000, 3),
        "files_and_fsync_ms": round((total - png - thumbnails - records) / SAVES * 1000, 3),
        "thumbnail_and_record_vs_png": round((thumbnails + records) / png, 3),
        "all_overhead_vs_png": round((total - png) / png, 3),
    }


def measure_board_listing(bench: Stack) -> dict[str, Any]:
    board = bench.board_records.save("big board").board_id
    other = bench.board_records.save("other board").board_id
    names = SimpleNameService()
    # Records only: a listing reads no file. As many images again lie elsewhere, so the board is not the table.
    with bench.db.transaction():
        for i in range(2 * BOARD_SIZE):
            name = names.create_image_name()
            bench.records.save(
                name, ResourceOrigin.INTERNAL, ImageCategory.GENERAL, 512, 512, has_workflow=False, starred=i % 50 == 0
            )
            if i % 2 == 0:
                bench.board_images.add_image_to_board(board, name)
            elif i % 4 == 1:
                bench.board_images.add_image_to_board(other, name)

    rng = random.Random(0)
    offsets = [0] * (LISTINGS // 2) + [rng.randrange(0, BOARD_SIZE, PAGE) for _ in range(LISTINGS // 2)]
    timings_ms = []
    for offset in offsets:
        start = time.perf_counter()
        page = bench.images.get_many(ImageListQuery(offset=offset, limit=PAGE, board_id=board, is_intermediate=False))
        timings_ms.append((time.perf_counter() - start) * 1000)
        assert page.total == BOARD_SIZE and len(page.items) == PAGE
    first_pages, deep_pages = timings_ms[: LISTINGS // 2], timings_ms[LISTINGS // 2 :]
    return {
        "measurement": "list_board_of_10000",
        "page_size": PAGE,
        "listings": LISTINGS,
        "p50_ms": round(statistics.median(timings_ms), 3),
        "p95_ms": round(statistics.quantiles(timings_ms, n=20)[-1], 3),
        "first_page_p50_ms": round(statistics.median(first_pages), 3),
        "random_page_p50_ms": round(statistics.median(deep_pages), 3),
    }


def main() -> None:
    images = generated_images(8)
    with stack() as bench:
        saves = measure_saves(bench, images)
        print(json.dumps(saves), flush=True)
    with stack() as bench:
        listing = measure_board_listing(bench)
        print(json.dumps(listing), flush=True)
    summary = {
        "measurement": "summary",
        "images_per_s": saves["images_per_s"],
        "thumbnail_and_record_vs_png": saves["thumbnail_and_record_vs_png"],
        "all_overhead_vs_png": saves["all_overhead_vs_png"],
        "board_listing_p50_ms": listing["p50_ms"],
    }
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
