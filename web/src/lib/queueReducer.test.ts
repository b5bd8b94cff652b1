import { describe, expect, it } from "vitest";
import type { QueueStatus, SessionQueueItem } from "../api/types";
import { durationSeconds, initialQueueState, MAX_ROWS, PAGE_ROWS, type QueueAction, queueReducer, type QueueState, reduceAll, type StatusChangedEvent } from "./queueReducer";

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

  it("keeps a page of the newest rows until older ones are loaded", () => {
    const events = Array.from({ length: PAGE_ROWS + 10 }, (_, index) => changed(event(index + 1, "pending", 1)));
    const state = run(events);
    expect(state.rows).toHaveLength(PAGE_ROWS);
    expect(state.rows[0].item_id).toBe(PAGE_ROWS + 10);
    expect(state.rows.at(-1)!.item_id).toBe(11);
  });

  it("adds older pages below the newest rows, and events keep them", () => {
    const page = (from: number) => Array.from({ length: PAGE_ROWS }, (_, index) => item(from - index, "completed", 2));
    let state = run([{ type: "snapshot_requested" }, { type: "snapshot", items: page(300), counts: counts({ completed: 300, total: 300 }) }]);
    state = run([{ type: "older", items: page(200) }], state);
    expect(state.rows).toHaveLength(2 * PAGE_ROWS);
    expect(state.rows.at(-1)!.item_id).toBe(101);
    state = run([changed(event(301, "pending", 3)), changed(event(150, "failed", 5))], state);
    expect(state.rows).toHaveLength(2 * PAGE_ROWS);
    expect(state.rows[0].item_id).toBe(301);
    expect(state.rows.find((row) => row.item_id === 150)!.status).toBe("failed");
    expect(state.rows.at(-1)!.item_id).toBe(102);
  });

  it("keeps the older rows it loaded while a snapshot was on its way", () => {
    const state = run([
      changed(event(5, "completed", 2)),
      { type: "snapshot_requested" },
      { type: "older", items: [item(4, "completed", 2), item(3, "failed", 2)] },
      { type: "snapshot", items: [item(5, "completed", 2)], counts: counts({ completed: 5, total: 5 }) },
    ]);
    expect(state.rows.map((row) => row.item_id)).toEqual([5, 4, 3]);
  });

  it("never keeps more than MAX_ROWS rows, however many pages are loaded", () => {
    let state = initialQueueState;
    for (let next = 2 * MAX_ROWS; next > 0; next -= PAGE_ROWS) {
      state = run([{ type: "older", items: Array.from({ length: PAGE_ROWS }, (_, index) => item(next - index, "completed", 2)) }], state);
    }
    expect(state.limit).toBe(MAX_ROWS);
    expect(state.rows).toHaveLength(MAX_ROWS);
    expect(state.rows[0].item_id).toBe(2 * MAX_ROWS);
  });

  it("adds the pending items of a new batch, which send no event, with the counts read with them", () => {
    let state = run([{ type: "snapshot_requested" }, { type: "snapshot", items: [item(1, "in_progress", 2)], counts: counts({ in_progress: 1, total: 1 }) }]);
    state = run([{ type: "newer", items: [item(3, "pending", 3), item(2, "pending", 3)], counts: counts({ pending: 2, in_progress: 1, total: 3 }) }], state);
    expect(state.rows.map((row) => [row.item_id, row.status])).toEqual([
      [3, "pending"],
      [2, "pending"],
      [1, "in_progress"],
    ]);
    expect(state.counts).toEqual(counts({ pending: 2, in_progress: 1, total: 3 }));
  });

  it("does not undo with a late read of new items what events have changed since", () => {
    const state = run([changed(event(2, "completed", 6)), { type: "newer", items: [item(2, "pending", 3)], counts: counts({ pending: 1, total: 1 }) }]);
    expect(state.rows[0].status).toBe("completed");
  });

  it("goes back to one page when the queue is cleared", () => {
    const state = run([{ type: "older", items: [item(1, "completed", 2)] }, { type: "queue_cleared" }]);
    expect(state.limit).toBe(PAGE_ROWS);
  });
});

describe("reduceAll", () => {
  // A burst: 300 items, each pending, running and finished, their events interleaved as a busy queue sends them,
  // with progress and a batch read among them.
  const burst = (): QueueAction[] => {
    const actions: QueueAction[] = [];
    for (let id = 1; id <= 300; id++) {
      actions.push(changed(event(id, "pending", 1)));
      if (id > 1) actions.push(changed(event(id - 1, "in_progress", id)));
      actions.push({ type: "invocation_progress", event: { item_id: id - 1, percentage: 0.5, message: "", image: null } });
      if (id > 2) actions.push(changed(event(id - 2, id % 7 === 0 ? "failed" : "completed", id + 1, { queue_status: counts({ completed: id - 2, total: id }) })));
      if (id % 50 === 25) actions.push({ type: "newer", items: [item(id, "pending", 1)], counts: counts({ total: id }) });
    }
    return actions;
  };

  it("applied at once, ends where the events applied one by one end, dropping no finished item", () => {
    const state = { ...initialQueueState, limit: MAX_ROWS };
    const actions = burst();
    const together = reduceAll(state, actions);
    expect(together).toEqual(actions.reduce(queueReducer, state));
    expect(together.rows).toHaveLength(300);
    expect(together.rows.filter((row) => row.status === "completed" || row.status === "failed")).toHaveLength(298);
    expect(together.rows.slice(0, 2).map((row) => row.status)).toEqual(["pending", "in_progress"]);
    expect(together.counts).toEqual(counts({ completed: 298, total: 300 }));
  });

  it("applied a frame at a time, in any split, ends the same", () => {
    const actions = burst();
    const state = { ...initialQueueState, limit: MAX_ROWS };
    let split = state;
    for (let start = 0; start < actions.length; start += 37) split = reduceAll(split, actions.slice(start, start + 37));
    expect(split).toEqual(reduceAll(state, actions));
  });

  it("keeps the objects of the rows nothing changed, so that they are not drawn again", () => {
    const before = run([changed(event(1, "completed", 2)), changed(event(2, "in_progress", 2))]);
    const after = reduceAll(before, [changed(event(2, "completed", 3)), changed(event(3, "pending", 3))]);
    expect(after.rows.find((row) => row.item_id === 1)).toBe(before.rows.find((row) => row.item_id === 1));
    expect(after.rows.find((row) => row.item_id === 2)).not.toBe(before.rows.find((row) => row.item_id === 2));
  });

  it("leaves the state alone when there is nothing to apply", () => {
    expect(reduceAll(initialQueueState, [])).toBe(initialQueueState);
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
