// The Queue page's state: a snapshot fetched once (and again after a reconnect), then kept current by socket.io
// events alone. Each row carries the time of its last change, so an event older than what is shown (a replayed
// one, or one the snapshot already holds) changes nothing, whatever order they arrive in; the rows events bring
// while a snapshot is on its way are kept when it lacks them.
import type { QueueItemStatus, QueueStatus, SessionQueueItem } from "../api/types";

export interface QueueRow {
  item_id: number;
  batch_id: string;
  origin: string | null;
  status: QueueItemStatus;
  created_at: string;
  updated_at: string;
  started_at: string | null;
  completed_at: string | null;
  error_type: string | null;
  error_message: string | null;
  error_traceback: string | null;
}

export interface Progress {
  item_id: number;
  percentage: number | null;
  message: string;
  image: { width: number; height: number; dataURL: string } | null;
}

export interface QueueState {
  /** The newest items, newest first, at most `MAX_ROWS`. */
  rows: QueueRow[];
  counts: QueueStatus | null;
  progress: Progress | null;
  /** The items events changed while a snapshot is on its way; null when none is. */
  touched: ReadonlySet<number> | null;
}

export const MAX_ROWS = 500;

export interface StatusChangedEvent extends Omit<QueueRow, "origin" | "error_type" | "error_message" | "error_traceback" | "started_at" | "completed_at"> {
  queue_id: string;
  origin?: string | null;
  old_status: QueueItemStatus | null;
  error_type?: string | null;
  error_message?: string | null;
  error_traceback?: string | null;
  started_at?: string | null;
  completed_at?: string | null;
  queue_status: QueueStatus;
}

export type QueueAction =
  | { type: "snapshot_requested" }
  | { type: "snapshot"; items: SessionQueueItem[]; counts: QueueStatus }
  | { type: "queue_item_status_changed"; event: StatusChangedEvent }
  | { type: "invocation_progress"; event: Progress }
  | { type: "queue_cleared" };

export const initialQueueState: QueueState = { rows: [], counts: null, progress: null, touched: null };

const FINISHED: ReadonlySet<QueueItemStatus> = new Set(["completed", "failed", "canceled"]);

export function isFinished(status: QueueItemStatus): boolean {
  return FINISHED.has(status);
}

export function rowOf(item: SessionQueueItem | StatusChangedEvent): QueueRow {
  return {
    item_id: item.item_id,
    batch_id: item.batch_id,
    origin: item.origin ?? null,
    status: item.status as QueueItemStatus,
    created_at: item.created_at,
    updated_at: item.updated_at,
    started_at: item.started_at ?? null,
    completed_at: item.completed_at ?? null,
    error_type: item.error_type ?? null,
    error_message: item.error_message ?? null,
    error_traceback: item.error_traceback ?? null,
  };
}

const newer = (a: string, b: string) => Date.parse(a) > Date.parse(b);

/** `rows` with `incoming` put in where they are newer than what is there, newest item first, bounded. */
function merge(rows: QueueRow[], incoming: QueueRow[]): QueueRow[] {
  const byId = new Map(rows.map((row) => [row.item_id, row]));
  for (const row of incoming) {
    const shown = byId.get(row.item_id);
    if (shown === undefined || !newer(shown.updated_at, row.updated_at)) byId.set(row.item_id, row);
  }
  return [...byId.values()].sort((a, b) => b.item_id - a.item_id).slice(0, MAX_ROWS);
}

export function queueReducer(state: QueueState, action: QueueAction): QueueState {
  switch (action.type) {
    case "snapshot_requested":
      return { ...state, touched: new Set() };
    case "snapshot": {
      // The snapshot is the truth for the items it holds; a row it lacks is gone (cleared, pruned, deleted)
      // unless an event brought it while the snapshot was on its way.
      const kept = state.rows.filter((row) => state.touched?.has(row.item_id));
      const rows = merge(kept, action.items.map(rowOf));
      const running = state.progress && rows.find((row) => row.item_id === state.progress!.item_id);
      return {
        rows,
        counts: action.counts,
        progress: running && running.status === "in_progress" ? state.progress : null,
        touched: null,
      };
    }
    case "queue_item_status_changed": {
      const { event } = action;
      const progress = state.progress?.item_id === event.item_id && event.status !== "in_progress" ? null : state.progress;
      return {
        rows: merge(state.rows, [rowOf(event)]),
        counts: event.queue_status,
        progress,
        touched: state.touched && new Set(state.touched).add(event.item_id),
      };
    }
    case "invocation_progress": {
      const row = state.rows.find((candidate) => candidate.item_id === action.event.item_id);
      if (row !== undefined && row.status !== "in_progress") return state;
      return { ...state, progress: action.event };
    }
    case "queue_cleared":
      // Clearing cancels the running item and deletes every item.
      return {
        ...state,
        rows: [],
        progress: null,
        counts: state.counts && { ...state.counts, pending: 0, in_progress: 0, completed: 0, failed: 0, canceled: 0, total: 0, item_id: null, batch_id: null, session_id: null },
      };
  }
}

/** Seconds between an item's start and its end (or `now` while it runs); null before it starts. */
export function durationSeconds(row: QueueRow, now: number = Date.now()): number | null {
  if (row.started_at === null) return null;
  const end = row.completed_at === null ? now : Date.parse(row.completed_at);
  return Math.max(0, (end - Date.parse(row.started_at)) / 1000);
}
