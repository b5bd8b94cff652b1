"""The web UI's scenarios, as a person uses it, in a real browser against a real server (see conftest.py)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
from PIL import Image
from playwright.sync_api import Browser, Locator, Page, expect
from tests.e2e.conftest import Snap, save_screenshot
from tests.helpers import edge, graph_json, wait_for
from tests.serve_process import ServeProcess, WorkerProcess

from nodeloom.app.services.shared.default_graphs import text_to_image_graph

QUEUE = "/v1/queue/default"
PAGES = {"/": "Generate", "/queue": "Queue", "/gallery": "Uncategorized", "/models": "Models"}
"""Each page's address and its heading."""
ADD = graph_json(
    [
        {"id": "a", "type": "integer", "value": 1},
        {"id": "b", "type": "integer", "value": 2},
        {"id": "sum", "type": "add", "use_cache": False},
    ],
    [edge("a", "value", "sum", "a"), edge("b", "value", "sum", "b")],
)


def enqueue(api: httpx.Client, graph: dict[str, Any], runs: int = 1) -> tuple[str, list[int]]:
    """The batch id and the item ids."""
    response = api.post(f"{QUEUE}/enqueue_batch", json={"batch": {"graph": graph, "runs": runs}})
    assert response.status_code == 200, response.text
    result = response.json()
    return result["batch"]["batch_id"], result["item_ids"]


def finished_items(api: httpx.Client, batch_id: str) -> list[dict[str, Any]]:
    """The batch's items (outcomes with their outputs) once every one has finished."""
    waited = api.get(f"{QUEUE}/b/{batch_id}/wait", params={"timeout": 60}, timeout=70).json()
    assert waited["finished"], waited
    items: list[dict[str, Any]] = waited["items"]
    return items


def image_names(items: list[dict[str, Any]]) -> list[str]:
    return [
        output["image"]["image_name"]
        for item in items
        for outputs in item["outputs"].values()
        for output in outputs
        if "image" in output
    ]


def queue_row(page: Page, item_id: int) -> Locator:
    details = page.get_by_role("button", name=f"Details of item {item_id}", exact=True)
    return page.get_by_role("table", name="Queue items").get_by_role("row").filter(has=details)


def test_generating_two_images_shows_them_in_the_results_and_the_gallery(
    page: Page, snap: Snap, api: httpx.Client, main_model: dict[str, Any]
) -> None:
    page.goto("/")
    page.get_by_role("combobox", name="Model", exact=True).select_option(main_model["key"])
    page.get_by_role("textbox", name="Prompt", exact=True).fill("a lighthouse on a cliff at dusk")
    for label, value in {"Width": 64, "Height": 64, "Steps": 3, "Images": 2, "Runs": 1}.items():
        page.get_by_role("spinbutton", name=label, exact=True).fill(str(value))
    with page.expect_response(re.compile(r"/enqueue_batch$")) as enqueued:
        page.get_by_role("button", name="Generate", exact=True).click()
    batch_id = enqueued.value.json()["batch"]["batch_id"]
    made = image_names(finished_items(api, batch_id))
    assert len(made) == 2

    results = page.get_by_role("region", name="Results")
    for name in made:
        expect(results.get_by_role("img", name=name, exact=True)).to_be_visible()
        expect(results.get_by_role("img", name=name, exact=True)).to_have_js_property("complete", True)
    snap("results")

    page.get_by_role("link", name="Gallery", exact=True).click()
    expect(page).to_have_url(re.compile(r"/gallery$"))
    grid = page.get_by_label("Images", exact=True)
    for name in made:
        expect(grid.get_by_role("img", name=name, exact=True)).to_be_visible()


def test_a_pause_and_a_resume_by_another_client_show_in_the_header_at_once(page: Page, api: httpx.Client) -> None:
    page.goto("/")
    processor = page.get_by_label("Processor", exact=True)
    # Once connected, the page reads the status again only when an event says it may have changed.
    expect(page.get_by_role("status", name="Connection")).to_have_text("Connected")
    expect(processor).to_have_text(re.compile("^Running"))
    try:
        api.put("v1/queue/default/processor/pause").raise_for_status()
        expect(processor).to_have_text("Paused", timeout=5_000)
    finally:
        api.put("v1/queue/default/processor/resume").raise_for_status()
    expect(processor).to_have_text(re.compile("^Running"), timeout=5_000)


def test_a_running_item_canceled_on_the_queue_page_shows_canceled(page: Page, api: httpx.Client) -> None:
    _, [item_id] = enqueue(api, graph_json([{"id": "wait", "type": "e2e_wait", "seconds": 60}]))
    try:
        wait_for(lambda: api.get(f"{QUEUE}/i/{item_id}").json()["status"] == "in_progress", what="the item to start")
        page.goto("/queue")
        row = queue_row(page, item_id)
        expect(row).to_have_attribute("data-status", "in_progress")
        progress = row.get_by_role("progressbar", name=f"Progress of item {item_id}")
        expect(progress).to_be_visible()
        row.get_by_role("button", name="Cancel", exact=True).click()

        expect(row).to_have_attribute("data-status", "canceled")
        expect(progress).to_have_count(0)
        expect(row.get_by_role("button", name="Retry", exact=True)).to_be_enabled()
        assert api.get(f"{QUEUE}/i/{item_id}").json()["status"] == "canceled"
    finally:
        # A failure must not leave the minute-long item holding up the other tests' sessions.
        api.put(f"{QUEUE}/i/{item_id}/cancel")


def test_after_a_server_restart_the_page_reconnects_and_shows_what_finished_meanwhile(
    page: Page, snap: Snap, tmp_path: Path
) -> None:
    # A server of its own: restarting the module's would cost the other tests its loaded model.
    server = ServeProcess(tmp_path / "root")
    server.spawn()
    try:
        server.wait_healthy()
        page.goto(f"{server.url}/queue")
        connection = page.get_by_role("status", name="Connection")
        expect(connection).to_contain_text("Connected")

        # The page's socket.io connections are refused until the items have finished, so it cannot hear of them
        # live: it must find them by resyncing once it is back.
        refusing = True
        page.route("**/ws/socket.io/**", lambda route: route.abort() if refusing else route.continue_())
        page.route_web_socket(
            re.compile("/ws/socket.io/"), lambda ws: ws.close() if refusing else ws.connect_to_server()
        )
        server.interrupt()
        expect(connection).to_contain_text(re.compile("Reconnecting|Disconnected"))
        snap("disconnected")
        server.spawn()
        server.wait_healthy()
        with httpx.Client(base_url=f"{server.url}/api", timeout=60) as api:
            batch_id, _ = enqueue(api, ADD, runs=2)
            items = finished_items(api, batch_id)
            assert [item["status"] for item in items] == ["completed", "completed"]
            refusing = False

            expect(connection).to_contain_text("Connected", timeout=30_000)
            for item in items:
                expect(queue_row(page, item["item_id"])).to_have_attribute("data-status", "completed")
            counts = page.get_by_label("Counts", exact=True)
            completed = counts.locator("div").filter(has_text="completed").locator("dd")
            expect(completed).to_have_text(str(api.get(f"{QUEUE}/status").json()["queue"]["completed"]))
    finally:
        server.close()


def test_an_uploaded_image_moved_to_a_new_board_is_found_there(
    page: Page, snap: Snap, api: httpx.Client, tmp_path: Path
) -> None:
    upload = tmp_path / "teal.png"
    Image.new("RGB", (48, 32), "teal").save(upload)
    before = set(api.get("/v1/images/names").json()["image_names"])
    page.goto("/gallery")
    boards = page.get_by_role("list", name="Boards")
    grid = page.get_by_role("list", name="Images")

    page.get_by_role("button", name="New board", exact=True).click()
    page.get_by_role("textbox", name="Board name", exact=True).fill("E2E holiday")
    page.get_by_role("button", name="Create", exact=True).click()
    new_board = boards.get_by_role("button", name=re.compile("^E2E holiday"))
    expect(new_board).to_be_visible()
    [board] = [b for b in api.get("/v1/boards/", params={"all": True}).json() if b["board_name"] == "E2E holiday"]

    boards.get_by_role("button", name=re.compile("^Uncategorized")).click()
    page.get_by_label("Upload images", exact=True).set_input_files(upload)
    [name] = wait_for(
        lambda: set(api.get("/v1/images/names").json()["image_names"]) - before, what="the upload to be stored"
    )
    thumbnail = grid.get_by_role("img", name=name, exact=True)
    expect(thumbnail).to_be_visible()

    thumbnail.click()
    view = page.get_by_role("dialog", name=f"Image {name}")
    snap("image-view")
    view.get_by_role("combobox", name="Move to board", exact=True).select_option(label="E2E holiday")
    # The image has left the board on show, and its view with it.
    expect(view).to_be_hidden()
    expect(thumbnail).to_have_count(0)
    assert api.get(f"/v1/images/i/{name}").json()["board_id"] == board["board_id"]

    new_board.click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("E2E holiday")
    expect(grid.get_by_role("img")).to_have_count(1)
    expect(thumbnail).to_be_visible()
    expect(new_board).to_contain_text("1")


def test_a_finished_items_statistics_list_its_node_types(
    page: Page, api: httpx.Client, main_model: dict[str, Any]
) -> None:
    graph = text_to_image_graph(main_model, "a small red boat", width=64, height=64, steps=2, seed=7)
    [item] = finished_items(api, enqueue(api, graph.model_dump(mode="json"))[0])
    assert item["status"] == "completed", item
    node_types = {node.type for node in graph.nodes.values()}

    page.goto("/queue")
    queue_row(page, item["item_id"]).click()
    stats = page.get_by_role("table", name="Statistics")
    for node_type in node_types:
        expect(stats.get_by_role("cell", name=node_type, exact=True)).to_be_visible()
    expect(stats.get_by_role("row")).to_have_count(len(node_types) + 1)
    # The model cache's figures: the first session on the model loaded its parts.
    expect(page.get_by_label("Model cache", exact=True)).to_contain_text("Cache misses")


def test_use_these_settings_restores_an_images_settings(
    page: Page, api: httpx.Client, main_model: dict[str, Any]
) -> None:
    graph = text_to_image_graph(main_model, "a fox in the snow", "blurry", 80, 64, 3, 6.5, "dpmpp_2m", 4242)
    [name] = image_names(finished_items(api, enqueue(api, graph.model_dump(mode="json"))[0]))

    page.goto("/")
    prompt = page.get_by_role("textbox", name="Prompt", exact=True)
    prompt.fill("something else entirely")
    result = (
        page.get_by_role("region", name="Results")
        .get_by_role("listitem")
        .filter(has=page.get_by_role("img", name=name, exact=True))
    )
    result.get_by_role("button", name="Use these settings", exact=True).click()

    expect(prompt).to_have_value("a fox in the snow")
    expect(page.get_by_role("textbox", name="Negative prompt", exact=True)).to_have_value("blurry")
    for label, value in {"Width": "80", "Height": "64", "Steps": "3", "CFG scale": "6.5", "Seed": "4242"}.items():
        expect(page.get_by_role("spinbutton", name=label, exact=True)).to_have_value(value)
    expect(page.get_by_role("combobox", name="Scheduler", exact=True)).to_have_value("dpmpp_2m")
    expect(page.get_by_role("combobox", name="Model", exact=True)).to_have_value(main_model["key"])
    expect(page.get_by_role("checkbox", name="Random seed", exact=True)).not_to_be_checked()


def luminance(css_colour: str) -> float:
    """0 (black) to 1 (white), from the `rgb(...)`/`rgba(...)` a computed style gives."""
    red, green, blue = (int(part) for part in re.findall(r"\d+", css_colour)[:3])
    return (0.2126 * red + 0.7152 * green + 0.0722 * blue) / 255


def test_every_page_fits_a_phone_and_follows_the_systems_colour_scheme(browser: Browser, server: ServeProcess) -> None:
    backgrounds: dict[str, float] = {}
    for scheme in ("light", "dark"):
        context = browser.new_context(viewport={"width": 390, "height": 844}, color_scheme=scheme, base_url=server.url)
        try:
            page = context.new_page()
            for path, title in PAGES.items():
                page.goto(path)
                expect(page.get_by_role("heading", level=1)).to_contain_text(title)
                # The page itself never scrolls sideways; a wide table scrolls inside its own box.
                assert page.evaluate("document.documentElement.scrollWidth") <= 390, (path, scheme)
                save_screenshot(page, f"phone-{scheme}{path.replace('/', '-').rstrip('-')}")
            backgrounds[scheme] = luminance(page.evaluate("getComputedStyle(document.body).backgroundColor"))
        finally:
            context.close()
    assert backgrounds["light"] > 0.8 and backgrounds["dark"] < 0.2, backgrounds


def test_a_server_without_a_processor_shows_the_state_of_its_workers_elsewhere(
    browser: Browser, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    api = ServeProcess(root, "--no-processor")
    api.spawn()
    context = browser.new_context(base_url=api.url)
    worker: WorkerProcess | None = None
    try:
        api.wait_healthy()
        page = context.new_page()
        page.goto("/")
        processor = page.get_by_label("Processor", exact=True)
        expect(processor).to_have_text("Stopped")

        worker = WorkerProcess(root, "worker")
        expect(processor).to_have_text("Running · Idle", timeout=30_000)
        save_screenshot(page, "no-processor-with-a-worker")

        worker.interrupt()
        expect(processor).to_have_text("Stopped", timeout=30_000)
    finally:
        context.close()
        if worker is not None:
            worker.close()
        api.close()
