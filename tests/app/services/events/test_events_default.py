from __future__ import annotations

import logging
import threading
import time

import pytest
from tests.helpers import wait_for

from nodeloom.app.services.events.events_common import EventBase, QueueClearedEvent
from nodeloom.app.services.events.events_default import InProcessEventService


def test_dispatch_does_not_wait_for_a_slow_subscriber() -> None:
    bus = InProcessEventService()
    release = threading.Event()
    seen: list[EventBase] = []

    def slow(event: EventBase) -> None:
        release.wait(5)

    bus.subscribe(slow)
    bus.subscribe(seen.append)
    bus.start()
    try:
        started = time.monotonic()
        for i in range(100):
            bus.dispatch(QueueClearedEvent(queue_id=f"q{i}"))
        assert time.monotonic() - started < 0.1
        release.set()
        wait_for(lambda: len(seen) == 100, what="every event")
        assert seen == [QueueClearedEvent(queue_id=f"q{i}", timestamp=event.timestamp) for i, event in enumerate(seen)]
    finally:
        release.set()
        bus.stop()


def test_a_failing_subscriber_is_logged_and_the_others_still_get_the_event(caplog: pytest.LogCaptureFixture) -> None:
    bus = InProcessEventService()
    seen: list[EventBase] = []

    def broken(event: EventBase) -> None:
        raise RuntimeError("subscriber bug")

    bus.subscribe(broken)
    unsubscribe = bus.subscribe(seen.append)
    bus.start()
    with caplog.at_level(logging.ERROR):
        bus.dispatch(QueueClearedEvent(queue_id="a"))
        wait_for(lambda: seen, what="the event")
    unsubscribe()
    bus.dispatch(QueueClearedEvent(queue_id="b"))
    bus.stop()
    assert seen == [QueueClearedEvent(queue_id="a", timestamp=seen[0].timestamp)]
    assert "subscriber bug" in caplog.text


def test_events_dispatched_before_start_are_delivered() -> None:
    bus = InProcessEventService()
    seen: list[EventBase] = []
    bus.subscribe(seen.append)
    bus.dispatch(QueueClearedEvent(queue_id="early"))
    bus.start()
    bus.stop()
    assert seen == [QueueClearedEvent(queue_id="early", timestamp=seen[0].timestamp)]


def test_stop_gives_up_on_a_handler_that_holds_the_bus() -> None:
    bus = InProcessEventService()
    release = threading.Event()
    handled: list[EventBase] = []

    def stuck(event: EventBase) -> None:
        release.wait(10)
        handled.append(event)

    bus.subscribe(stuck)
    bus.start()
    bus.dispatch(QueueClearedEvent(queue_id="a"))
    try:
        bus.stop(timeout_s=0.2)
        assert handled == []  # stop returned while the handler still held the bus
    finally:
        release.set()
