from __future__ import annotations

from nodeloom.app.api.socket_replay import ReplayBuffer


def packet(size: int) -> str:
    return "x" * size


def test_each_queue_keeps_its_last_events() -> None:
    replay = ReplayBuffer(max_events=3, max_bytes=10_000)
    for seq in range(1, 6):
        replay.add("a", seq, f"a{seq}")
    replay.add("b", 1, "b1")

    assert replay.after("a", 0) == ["a3", "a4", "a5"]
    assert replay.after("a", 3) == ["a4", "a5"]
    assert (replay.oldest("a"), replay.oldest("b"), replay.oldest("c")) == (3, 1, None)
    assert replay.size_bytes == 3 * 2 + 2


def test_the_oldest_events_of_all_queues_go_first_once_the_bytes_are_spent() -> None:
    replay = ReplayBuffer(max_events=1000, max_bytes=100)
    replay.add("a", 1, packet(40))
    replay.add("b", 1, packet(40))
    replay.add("a", 2, packet(40))

    assert (replay.oldest("a"), replay.oldest("b")) == (2, 1)
    assert replay.size_bytes == 80
    replay.add("c", 1, packet(90))
    assert (replay.oldest("a"), replay.oldest("b"), replay.oldest("c")) == (None, None, 1)
    assert replay.size_bytes == 90


def test_an_event_larger_than_the_budget_is_not_kept() -> None:
    replay = ReplayBuffer(max_events=1000, max_bytes=100)
    replay.add("a", 1, packet(10))
    replay.add("a", 2, packet(101))
    assert replay.oldest("a") is None and replay.size_bytes == 0


def test_bytes_are_counted_as_utf8() -> None:
    replay = ReplayBuffer(max_events=1000, max_bytes=100)
    replay.add("a", 1, "é" * 30)
    assert replay.size_bytes == 60


def test_what_a_queue_drops_for_its_count_does_not_pile_up() -> None:
    replay = ReplayBuffer(max_events=10, max_bytes=15)
    for seq in range(1, 100_001):
        replay.add("a", seq, "e")
    assert replay.after("a", 0) == ["e"] * 10
    assert len(replay._arrivals) <= 2 * 10 + 1
    # The events of another queue are still dropped oldest first once the bytes run out.
    replay.add("b", 1, packet(10))
    assert replay.oldest("a") == 100_000 - 4 and replay.size_bytes == 15
