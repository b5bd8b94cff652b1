import { describe, expect, it } from "vitest";
import type { QueueStatus, SessionQueueItem } from "../api/types";
import { durationSeconds, initialQueueState, MAX_ROWS, type QueueAction, queueReducer, type QueueState, type StatusChangedEvent } from "./queueReducer";

const counts = (changes: Partial<QueueStatus> = {}): QueueStatus => ({
  queue_id: "default",
  pending: 0,
  in_progress: 0,
  completed: 0,
  failed: 0,
  canceled: 0,
  total: 0,
  ...changes,
});

const time = (second: number) => new Date(Date.UTC(2026, 0, 1, 0, 0, second)).toISOString();

const event = (item_id: number, status: StatusChangedEvent["status"], second: number, changes: Partial<StatusChangedEvent> = {}): StatusChangedEvent => ({
  queue_id: "default",
  item_id,
  batch_id: "b1",
  origin: "web",
  status,
  old_status: null,
  created_at: time(0),
  updated_at: time(second),
  started_at: status === "pending" ? null : time(1),
  completed_at: ["completed", "failed", "canceled"].includes(status as string) ? time(second) : null,
  queue_status: counts({ total: 1 }),
  ...changes,
});

const item = (item_id: number, status: SessionQueueItem["status"], second: number): SessionQueueItem =>
  ({ item_id, batch_id: "b1", queue_id: "default", session_id: "s", status, created_at: time(0), updated_at: time(second) }) as SessionQueueItem;

const run = (actions: QueueAction[], state: QueueState = initialQueueState) => actions.reduce(queueReducer, state);
const changed = (e: StatusChangedEvent): QueueAction => ({ type: "queue_item_status_changed", event: e });

describe("queueReducer", () => {
  it("adds new items newest first and takes the counts of the latest event", () => {
    const state = run([
      changed(event(1, "pending", 1, { queue_status: counts({ pending: 1, total: 1 }) })),
      changed(event(2, "pending", 2, { queue_status: counts({ pending: 2, total: 2 }) })),
    ]);
    expect(state.rows.map((row) => row.item_id)).toEqual([2, 1]);
    expect(state.counts).toEqual(counts({ pending: 2, total: 2 }));
  });

  it("moves an item through its statuses, keeping its error", () => {
    const state = run([
      changed(event(1, "pending", 1)),
      changed(event(1, "in_progress", 2)),
      changed(event(1, "failed", 3, { error_type: "ValueError", error_message: "bad", error_traceback: "Traceback..." })),
    ]);
    expect(state.rows).toHaveLength(1);
    expect(state.rows[0]).toMatchObject({ status: "failed", error_type: "ValueError", error_traceback: "Traceback...", completed_at: time(3) });
  });

  it("ignores an event older than the row it would change (a replay)", () => {
    const state = run([changed(event(1, "completed", 5)), changed(event(1, "in_progress", 2))]);
    expect(state.rows[0].status).toBe("completed");
  });

  it("shows the running item's progress until it leaves in_progress", () => {
    const progress = { item_id: 1, percentage: 0.5, message: "step 5/10", image: null };
    let state = run([changed(event(1, "in_progress", 1)), { type: "invocation_progress", event: progress }]);
    expect(state.progress).toEqual(progress);
    state = run([changed(event(1, "canceled", 2))], state);
    expect(state.progress).toBeNull();
    expect(run([{ type: "invocation_progress", event: progress }], state).progress).toBeNull();
  });

  it("replaces the rows with a snapshot, dropping rows it lacks", () => {
    const state = run([
      changed(event(1, "pending", 1)),
      changed(event(9, "pending", 1)),
      { type: "snapshot_requested" },
      { type: "snapshot", items: [item(1, "completed", 4)], counts: counts({ completed: 1, total: 1 }) },
    ]);
    expect(state.rows.map((row) => [row.item_id, row.status])).toEqual([[1, "completed"]]);
    expect(state.counts).toEqual(counts({ completed: 1, total: 1 }));
    expect(state.touched).toBeNull();
  });

  it("keeps what events brought while the snapshot was on its way", () => {
    const state = run([
      { type: "snapshot_requested" },
      changed(event(2, "pending", 3)),
      changed(event(1, "completed", 6)),
      { type: "snapshot", items: [item(1, "in_progress", 4)], counts: counts({ in_progress: 1, total: 1 }) },
    ]);
    expect(state.rows.map((row) => [row.item_id, row.status])).toEqual([
      [2, "pending"],
      [1, "completed"],
    ]);
  });

  it("empties the queue when it is cleared", () => {
    const state = run([changed(event(1, "in_progress", 1, { queue_status: counts({ in_progress: 1, total: 1 }) })), { type: "queue_cleared" }]);
    expect(state.rows).toEqual([]);
    expect(state.counts).toMatchObject({ in_progress: 0, total: 0 });
  });

  it("keeps at most MAX_ROWS rows, the newest", () => {
    const events = Array.from({ length: MAX_ROWS + 10 }, (_, index) => changed(event(index + 1, "pending", 1)));
    const state = run(events);
    expect(state.rows).toHaveLength(MAX_ROWS);
    expect(state.rows[0].item_id).toBe(MAX_ROWS + 10);
    expect(state.rows.at(-1)!.item_id).toBe(11);
  });
});

describe("durationSeconds", () => {
  it("measures from start to end, or to now while running, and is null before the start", () => {
    const row = run([changed(event(1, "completed", 4))]).rows[0];
    expect(durationSeconds(row)).toBe(3);
    const running = run([changed(event(2, "in_progress", 2))]).rows[0];
    expect(durationSeconds(running, Date.parse(time(11)))).toBe(10);
    expect(durationSeconds(run([changed(event(3, "pending", 1))]).rows[0])).toBeNull();
  });
});
