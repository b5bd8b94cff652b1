"""The web UI in headless chromium against a real `nodeloom serve`: one JSON object per measurement.

(a) first load: `LOADS` page loads of `/`, each in a new browser context (an empty cache), from navigation to
first contentful paint (the Performance API's `paint` entry) and to the app's Generate button, with the bytes
transferred (every resource the page fetched until then); the median and the worst (target: FCP under 1 s).
(b) gallery: `IMAGES` images (64x64 PNGs, made through the image service in-process before the server starts),
scrolled to the last one; the page's requests by kind, and its JS heap and DOM nodes (Chrome's `Performance`
metrics, after a garbage collection) sampled on the way: both must stay bounded, not grow with the images seen.
(c) queue: the Queue page open while one-node sessions run as fast as the processor takes them (well over 100
events/s); a socket.io client beside the page records when each item's `completed` event reaches a client, and the
page records when its row shows the item completed (each row carries `data-item-id` and `data-status`, read by a
MutationObserver). The lag is the page's time minus the client's, per item: median, p95 and max, with the event
rate and the page's requests during the run (the queue page must not poll).
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import socketio
from PIL import Image
from playwright.sync_api import Browser, Page, Request, sync_playwright

# The server runs as the tests start it, from the repository root.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.serve_process import ServeProcess

from nodeloom.app.services.config.config_default import load_config
from nodeloom.app.services.image_records.image_records_common import ImageCategory, ResourceOrigin
from nodeloom.app.services.invocation_services import build_services

CHROMIUM = "/usr/bin/chromium"
LOADS = 5
IMAGES = 10_000
SAMPLE_EVERY_S = 2.0
SESSIONS = 1_500
QUEUE = "default"
ONE_NODE = {"nodes": {"value": {"id": "value", "type": "integer", "value": 7, "use_cache": False}}, "edges": []}


def fill_gallery(root: Path, count: int) -> None:
    """`count` small images in Uncategorized, each a different colour, the way an upload stores them."""
    services = build_services(load_config(root))
    try:
        for i in range(count):
            colour = (i * 37 % 256, i * 11 % 256, i * 101 % 256)
            services.images.create(Image.new("RGB", (64, 64), colour), ResourceOrigin.EXTERNAL, ImageCategory.GENERAL)
    finally:
        services.database.close()


PAINT_AND_BYTES = """async () => {
    const fcp = await new Promise((resolve) => {
        new PerformanceObserver((list, observer) => {
            const entry = list.getEntriesByName("first-contentful-paint")[0];
            if (entry) { observer.disconnect(); resolve(entry.startTime); }
        }).observe({type: "paint", buffered: true});
    });
    const entries = [...performance.getEntriesByType("navigation"), ...performance.getEntriesByType("resource")];
    return {
        fcp_ms: fcp,
        ready_ms: performance.now(),
        transferred_bytes: entries.reduce((sum, e) => sum + e.transferSize, 0),
        decoded_bytes: entries.reduce((sum, e) => sum + e.decodedBodySize, 0),
        requests: entries.length,
    };
}"""


def first_load(browser: Browser, url: str) -> dict[str, Any]:
    loads = []
    for _ in range(LOADS):
        context = browser.new_context()
        try:
            page = context.new_page()
            page.goto(url)
            page.get_by_role("button", name="Generate", exact=True).wait_for()
            loads.append(page.evaluate(PAINT_AND_BYTES))
        finally:
            context.close()
    fcp = [load["fcp_ms"] for load in loads]
    ready = [load["ready_ms"] for load in loads]
    return {
        "measurement": "first_load_cold_cache",
        "loads": LOADS,
        "fcp_ms_median": round(statistics.median(fcp), 1),
        "fcp_ms_max": round(max(fcp), 1),
        "generate_button_ms_median": round(statistics.median(ready), 1),
        "transferred_bytes": loads[0]["transferred_bytes"],
        "decoded_bytes": loads[0]["decoded_bytes"],
        "requests": loads[0]["requests"],
        "target_fcp_ms": 1000,
        "fcp_ok": max(fcp) < 1000,
    }


def request_kind(request: Request) -> str:
    path = request.url.split("?")[0]
    if "/thumbnail" in path:
        return "thumbnails"
    if "/full" in path:
        return "full_images"
    if "/api/v1/images" in path or "/api/v1/boards" in path:
        return "image_and_board_lists"
    return "other"


SCROLL_TO_END = """(grid) => {
    let box = grid;
    while (box && !(box.scrollHeight > box.clientHeight && /auto|scroll/.test(getComputedStyle(box).overflowY))) {
        box = box.parentElement;
    }
    box = box || document.scrollingElement;
    box.scrollTop = box.scrollHeight;
    return box.scrollHeight;
}"""


def gallery_scroll(browser: Browser, url: str, last_image: str) -> dict[str, Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        requests: Counter[str] = Counter()
        page.on("request", lambda request: requests.update([request_kind(request)]))
        cdp = context.new_cdp_session(page)
        cdp.send("Performance.enable")

        def sample() -> dict[str, float]:
            cdp.send("HeapProfiler.collectGarbage")
            metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
            return {"js_heap_mb": round(metrics["JSHeapUsedSize"] / 2**20, 2), "dom_nodes": metrics["Nodes"]}

        page.goto(f"{url}/gallery")
        grid = page.get_by_label("Images", exact=True)
        grid.get_by_role("img").first.wait_for()
        samples = [{"seconds": 0.0, **sample(), **requests}]
        last = page.get_by_alt_text(last_image, exact=True)
        start = last_sample = time.monotonic()
        height, stalled_since = 0, start
        while not last.is_visible():
            now = time.monotonic()
            new_height = grid.evaluate(SCROLL_TO_END)
            if new_height != height:
                height, stalled_since = new_height, now
            elif now - stalled_since > 10:
                break
            if now - last_sample > SAMPLE_EVERY_S:
                samples.append({"seconds": round(now - start, 1), **sample(), **requests})
                last_sample = now
            page.wait_for_timeout(50)
        reached = last.is_visible()
        seconds = time.monotonic() - start
        samples.append({"seconds": round(seconds, 1), **sample(), **requests})
        return {
            "measurement": "gallery_scroll",
            "images": IMAGES,
            "reached_last_image": reached,
            "seconds": round(seconds, 1),
            "requests": dict(requests),
            "js_heap_mb_first": samples[0]["js_heap_mb"],
            "js_heap_mb_max": max(s["js_heap_mb"] for s in samples),
            "js_heap_mb_last": samples[-1]["js_heap_mb"],
            "dom_nodes_first": samples[0]["dom_nodes"],
            "dom_nodes_max": max(s["dom_nodes"] for s in samples),
            "samples": samples,
        }
    finally:
        context.close()


ROW_WATCH = """() => {
    window.__completedAt = {};
    const seen = (row) => {
        if (row.dataset.status === "completed" && !(row.dataset.itemId in window.__completedAt)) {
            window.__completedAt[row.dataset.itemId] = performance.timeOrigin + performance.now();
        }
    };
    new MutationObserver((mutations) => {
        for (const m of mutations) {
            const rows = m.target.closest ? [m.target.closest("[data-item-id]")] : [];
            for (const node of m.addedNodes) {
                if (node.querySelectorAll) rows.push(...node.querySelectorAll("[data-item-id]"));
                if (node.dataset && node.dataset.itemId) rows.push(node);
            }
            for (const row of rows) if (row) seen(row);
        }
    }).observe(document.body, {subtree: true, childList: true, attributes: true, attributeFilter: ["data-status"]});
}"""


class EventClock:
    """A socket.io client subscribed to the queue: when each item's `completed` event reached it (epoch ms)."""

    def __init__(self, url: str) -> None:
        self.completed_at: dict[int, float] = {}
        self.events = 0
        self.first_event = self.last_event = 0.0
        self.client = socketio.Client()
        self.client.on("*", self._on_event)
        self.client.connect(url, socketio_path="/ws/socket.io", transports=["websocket"])
        self.client.call("subscribe_queue", {"queue_id": QUEUE})

    def _on_event(self, name: str, data: dict[str, Any]) -> None:
        now = time.time() * 1000
        self.events += 1
        self.first_event = self.first_event or now
        self.last_event = now
        if name == "queue_item_status_changed" and data["status"] == "completed":
            self.completed_at[data["item_id"]] = now

    def close(self) -> None:
        self.client.disconnect()


def queue_lag(browser: Browser, url: str) -> dict[str, Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    clock = EventClock(url)
    try:
        page = context.new_page()
        page.goto(f"{url}/queue")
        page.get_by_role("table", name="Queue items").wait_for()
        page.evaluate(ROW_WATCH)
        requests: Counter[str] = Counter()
        page.on("request", lambda request: requests.update([request.url.split("?")[0].removeprefix(url)]))
        body = {"batch": {"graph": ONE_NODE, "runs": SESSIONS}}
        response = httpx.post(f"{url}/api/v1/queue/{QUEUE}/enqueue_batch", json=body, timeout=60)
        response.raise_for_status()
        batch_id = response.json()["batch"]["batch_id"]
        waited = httpx.get(f"{url}/api/v1/queue/{QUEUE}/b/{batch_id}/wait", params={"timeout": 600}, timeout=610)
        assert waited.json()["finished"], waited.text
        # The page may still be catching up: give it up to 30 s to show every item it was sent.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and page.evaluate("Object.keys(window.__completedAt).length") < len(
            clock.completed_at
        ):
            page.wait_for_timeout(100)
        shown = {int(k): v for k, v in page.evaluate("window.__completedAt").items()}
        return lag_report(clock, shown, requests, page)
    finally:
        clock.close()
        context.close()


def lag_report(clock: EventClock, shown: dict[int, float], requests: Counter[str], page: Page) -> dict[str, Any]:
    lags = sorted(shown[item] - at for item, at in clock.completed_at.items() if item in shown)
    seconds = (clock.last_event - clock.first_event) / 1000
    return {
        "measurement": "queue_page_lag",
        "sessions": SESSIONS,
        "events": clock.events,
        "events_per_s": round(clock.events / seconds, 1) if seconds else None,
        "items_completed": len(clock.completed_at),
        "items_shown_completed": len(lags),
        "lag_ms_median": round(statistics.median(lags), 1) if lags else None,
        "lag_ms_p95": round(lags[int(len(lags) * 0.95)], 1) if lags else None,
        "lag_ms_max": round(lags[-1], 1) if lags else None,
        "page_requests_during_run": dict(requests),
        "rows_in_dom": page.locator("[data-item-id]").count(),
    }


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "root"
        start = time.monotonic()
        fill_gallery(root, IMAGES)
        fill_s = time.monotonic() - start
        server = ServeProcess(root, max_queue_size=SESSIONS * 2, log_level="warning")
        server.spawn()
        try:
            server.wait_healthy()
            # The gallery's order is the names route's: its last name is the grid's last image.
            last_image = httpx.get(f"{server.url}/api/v1/images/names", timeout=60).json()["image_names"][-1]
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
                print(json.dumps(first_load(browser, server.url)), flush=True)
                gallery = gallery_scroll(browser, server.url, last_image)
                print(json.dumps({**gallery, "fill_s": round(fill_s, 1)}), flush=True)
                print(json.dumps(queue_lag(browser, server.url)), flush=True)
                browser.close()
        finally:
            server.close()


if __name__ == "__main__":
    main()
