"""The web UI in headless chromium against a real `nodeloom serve`: one JSON object per measurement.

(a) first load: `LOADS` page loads of `/`, each in a new browser context (an empty cache), from navigation to
first contentful paint (the Performance API's `paint` entry) and to the app's Generate button, with the bytes
transferred (every resource the page fetched until then); the median and the worst (target: FCP under 1 s).
(b) gallery: `IMAGES` images (64x64 PNGs, made through the image service in-process before the server starts),
scrolled to the last one, or for `SCROLL_BUDGET_S`; the page's requests by kind, and the images in the grid, its
JS heap and DOM nodes (Chrome's `Performance` metrics, after a garbage collection) sampled on the way: heap and
nodes must stay bounded, not grow with the images seen.
(c) queue: the Queue page open while one-node sessions run, one batch each at `TARGET_EVENTS_PER_S`, then as one
batch as fast as the processor takes them; a socket.io client beside the page records when each item's `completed`
event reaches a client, and a MutationObserver in the page records when the item's row in the DOM first says
`completed` (the DOM update, before the paint that follows within a frame). The lag is the page's time minus the
client's, per item: median, p95 and max, with the event rate and the page's requests during the run (the queue
page must not poll).
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
from playwright.sync_api import Browser, Request, sync_playwright

# The server runs as the tests start it, from the repository root.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.serve_process import ServeProcess

from nodeloom.app.services.config.config_default import load_config
from nodeloom.app.services.image_records.image_records_common import ImageCategory, ResourceOrigin
from nodeloom.app.services.invocation_services import build_services

CHROMIUM = "/usr/bin/chromium"
LOADS = 5
IMAGES = 10_000
SAMPLE_EVERY_S = 10.0
SCROLL_BUDGET_S = 600.0
"""Scrolling stops here even short of the last image, which then says how far a grid that grows got."""
SESSIONS = 400
TARGET_EVENTS_PER_S = 100
EVENTS_PER_BATCH = 5
"""A one-session batch of one node: batch_enqueued, in_progress, invocation_started and _complete, completed."""
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
    const last = grid.querySelector("li:last-child img");
    return last ? last.alt : "";
}"""
"""Scrolls the grid's scrolling box to its end; returns the name of the grid's last image, which tells progress
even when the grid drops pages at its top as it loads them at its end."""


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
            return {
                "images_in_grid": grid.get_by_role("listitem").count(),
                "js_heap_mb": round(metrics["JSHeapUsedSize"] / 2**20, 2),
                "dom_nodes": metrics["Nodes"],
            }

        page.goto(f"{url}/gallery")
        grid = page.get_by_label("Images", exact=True)
        grid.get_by_role("img").first.wait_for()
        samples = [{"seconds": 0.0, **sample(), **requests}]
        last = page.get_by_alt_text(last_image, exact=True)
        start = last_sample = time.monotonic()
        shown_last, stalled_since = "", start
        while not last.is_visible():
            now = time.monotonic()
            grid_last = grid.evaluate(SCROLL_TO_END)
            if grid_last != shown_last:
                shown_last, stalled_since = grid_last, now
            if now - stalled_since > 10 or now - start > SCROLL_BUDGET_S:
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
    // The Queue page's rows carry their item's id and raw status as data attributes.
    window.completedAt = {};
    const check = (row) => {
        if (row.dataset.status !== "completed") return;
        const item = row.dataset.itemId;
        if (!(item in window.completedAt)) window.completedAt[item] = performance.timeOrigin + performance.now();
    };
    new MutationObserver((mutations) => {
        const rows = new Set();
        for (const m of mutations) {
            const element = m.target.nodeType === Node.ELEMENT_NODE ? m.target : m.target.parentElement;
            const row = element && element.closest("tr");
            if (row) rows.add(row);
            for (const node of m.addedNodes) if (node.nodeName === "TR") rows.add(node);
        }
        rows.forEach(check);
    }).observe(document.querySelector("table[aria-label='Queue items']"),
               {subtree: true, childList: true, characterData: true, attributes: true,
                attributeFilter: ["data-status"]});
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


def enqueue_sessions(url: str, sessions_per_s: float | None) -> None:
    """`SESSIONS` one-node sessions: one batch each, `sessions_per_s` of them a second, or one batch of all at once."""
    with httpx.Client(base_url=f"{url}/api/v1/queue/{QUEUE}", timeout=60) as client:
        if sessions_per_s is None:
            client.post("/enqueue_batch", json={"batch": {"graph": ONE_NODE, "runs": SESSIONS}}).raise_for_status()
            return
        start = time.monotonic()
        for i in range(SESSIONS):
            time.sleep(max(0.0, start + i / sessions_per_s - time.monotonic()))
            client.post("/enqueue_batch", json={"batch": {"graph": ONE_NODE}}).raise_for_status()


def queue_lag(browser: Browser, url: str, events_per_s: float | None) -> dict[str, Any]:
    """The Queue page's lag behind the events, `events_per_s` of them (or as many as the processor makes)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    clock = EventClock(url)
    try:
        page = context.new_page()
        page.goto(f"{url}/queue")
        page.get_by_role("table", name="Queue items").wait_for()
        page.evaluate(ROW_WATCH)
        requests: Counter[str] = Counter()
        page.on("request", lambda request: requests.update([request.url.split("?")[0].removeprefix(url)]))
        enqueue_sessions(url, None if events_per_s is None else events_per_s / EVENTS_PER_BATCH)
        deadline = time.monotonic() + 300
        while len(clock.completed_at) < SESSIONS and time.monotonic() < deadline:
            time.sleep(0.1)
        # The page may still be catching up: give it up to two minutes more to show every item.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and page.evaluate("Object.keys(window.completedAt).length") < SESSIONS:
            page.wait_for_timeout(100)
        shown = {int(k): v for k, v in page.evaluate("window.completedAt").items()}
        return {
            "measurement": "queue_page_lag",
            "paced_events_per_s": events_per_s,
            **lag_report(clock, shown),
            "page_requests_during_run": dict(requests),
        }
    finally:
        clock.close()
        context.close()


def lag_report(clock: EventClock, shown: dict[int, float]) -> dict[str, Any]:
    lags = sorted(shown[item] - at for item, at in clock.completed_at.items() if item in shown)
    seconds = (clock.last_event - clock.first_event) / 1000
    return {
        "sessions": SESSIONS,
        "events": clock.events,
        "events_per_s": round(clock.events / seconds, 1) if seconds else None,
        "items_completed": len(clock.completed_at),
        "items_shown_completed": len(lags),
        "lag_ms_median": round(statistics.median(lags), 1) if lags else None,
        "lag_ms_p95": round(lags[int(len(lags) * 0.95)], 1) if lags else None,
        "lag_ms_max": round(lags[-1], 1) if lags else None,
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
                print(json.dumps(queue_lag(browser, server.url, TARGET_EVENTS_PER_S)), flush=True)
                print(json.dumps(queue_lag(browser, server.url, None)), flush=True)
                browser.close()
        finally:
            server.close()


if __name__ == "__main__":
    main()
