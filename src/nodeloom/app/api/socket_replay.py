"""The events kept to replay to socket.io clients that reconnect: the last ones of each queue, bounded in bytes."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class _Kept:
    seq: int
    packet: str
    size: int


class ReplayBuffer:
    """At most `max_events` events of each queue and `max_bytes` of them over all queues; the oldest go first.

    A count per queue alone bounds nothing: a queue's events may be large (progress previews), and any client
    may make queues by naming them.
    """

    def __init__(self, max_events: int, max_bytes: int) -> None:
        self._max_events = max_events
        self._max_bytes = max_bytes
        self._queues: dict[str, deque[_Kept]] = {}
        # (queue id, seq) of the events in the order they came, to drop the oldest of all; an event its queue
        # dropped for the count stays here until it comes first or the next compaction.
        self._arrivals: deque[tuple[str, int]] = deque()
        self._kept = 0
        self._bytes = 0

    @property
    def size_bytes(self) -> int:
        """The bytes of the packets kept."""
        return self._bytes

    def add(self, queue_id: str, seq: int, packet: str) -> None:
        """Keeps the queue's event numbered `seq` (numbers grow within a queue), dropping what no longer fits."""
        size = len(packet) if packet.isascii() else len(packet.encode())
        events = self._queues.setdefault(queue_id, deque())
        events.append(_Kept(seq, packet, size))
        self._arrivals.append((queue_id, seq))
        self._kept += 1
        self._bytes += size
        if len(events) > self._max_events:
            self._drop_oldest(queue_id)
        while self._bytes > self._max_bytes:
            oldest = self._arrivals.popleft()
            if self._is_kept(*oldest):
                self._drop_oldest(oldest[0])
        if len(self._arrivals) > 2 * self._kept:
            self._arrivals = deque(arrival for arrival in self._arrivals if self._is_kept(*arrival))

    def oldest(self, queue_id: str) -> int | None:
        """The number of the queue's oldest kept event; None when none is kept."""
        events = self._queues.get(queue_id)
        return events[0].seq if events else None

    def after(self, queue_id: str, seq: int) -> list[str]:
        """The packets of the queue's kept events numbered above `seq`, in order."""
        return [kept.packet for kept in self._queues.get(queue_id, ()) if kept.seq > seq]

    def _is_kept(self, queue_id: str, seq: int) -> bool:
        # A queue drops its events oldest first, so an event is kept while the queue's oldest is not newer.
        events = self._queues.get(queue_id)
        return events is not None and events[0].seq <= seq

    def _drop_oldest(self, queue_id: str) -> None:
        events = self._queues[queue_id]
        dropped = events.popleft()
        self._kept -= 1
        self._bytes -= dropped.size
        if not events:
            del self._queues[queue_id]
