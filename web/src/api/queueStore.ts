// The queue as the UI shows it, for every page: one snapshot per (re)subscription and per enqueued batch, then
// socket.io events only.
import { useSyncExternalStore } from "react";
import { initialQueueState, PAGE_ROWS, type QueueAction, queueReducer, type QueueState } from "../lib/queueReducer";
import type { QueueAndProcessorStatus, SessionQueueItem } from "./types";
import { api, QUEUE } from "./client";
import { onEvent, onResync } from "./events";

let state: QueueState = initialQueueState;
const listeners = new Set<() => void>();

function dispatch(action: QueueAction): void {
  const next = queueReducer(state, action);
  if (next === state) return;
  state = next;
  listeners.forEach((listener) => listener());
}

const newestIds = async () => (await api<{ item_ids: number[] }>(`${QUEUE}/item_ids?order_dir=DESC`)).item_ids;
const itemsByIds = (item_ids: number[]) => api<SessionQueueItem[]>(`${QUEUE}/items_by_ids`, "POST", { item_ids });

/** Reads the newest items again, as many as the page shows, with the counts. */
export async function refetchQueue(): Promise<void> {
  dispatch({ type: "snapshot_requested" });
  const ids = (await newestIds()).slice(0, state.limit);
  const [items, status] = await Promise.all([
    itemsByIds(ids),
    api<QueueAndProcessorStatus>(`${QUEUE}/status`),
  ]);
  dispatch({ type: "snapshot", items, counts: status.queue });
}

/** Adds the page of items just older than the oldest shown. Ids only grow, so the oldest row is the cursor. */
export async function loadOlderItems(): Promise<void> {
  const oldest = state.rows.at(-1)?.item_id ?? Infinity;
  const ids = (await newestIds()).filter((id) => id < oldest).slice(0, PAGE_ROWS);
  dispatch({ type: "older", items: ids.length > 0 ? await itemsByIds(ids) : [] });
}

// New items come with one event per batch (`batch_enqueued`, `queue_items_retried`), not one per item: they are
// read with a snapshot, at most one at a time, and one more after it when events came meanwhile.
let refetching = false;
let refetchAgain = false;

function refetchSoon(): void {
  if (refetching) {
    refetchAgain = true;
    return;
  }
  refetching = true;
  void refetchQueue()
    .catch(() => undefined)
    .finally(() => {
      refetching = false;
      if (refetchAgain) {
        refetchAgain = false;
        refetchSoon();
      }
    });
}

export function startQueueStore(): void {
  onResync(refetchSoon);
  onEvent((name, payload) => {
    if (name === "batch_enqueued" || name === "queue_items_retried") refetchSoon();
    if (name === "queue_item_status_changed" || name === "invocation_progress" || name === "queue_cleared") {
      dispatch({ type: name, event: payload } as QueueAction);
    }
  });
}

export function useQueue(): QueueState {
  return useSyncExternalStore(
    (listener) => {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    () => state,
  );
}
