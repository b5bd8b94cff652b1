// The queue as the UI shows it, for every page: one snapshot per (re)subscription, then socket.io events only.
// Events are queued and applied together once per animation frame, so a burst of them costs one render.
import { useSyncExternalStore } from "react";
import { initialQueueState, PAGE_ROWS, type QueueAction, reduceAll, type QueueState } from "../lib/queueReducer";
import type { QueueAndProcessorStatus, SessionQueueItem } from "./types";
import { api, QUEUE } from "./client";
import { onEvent, onResync } from "./events";

let state: QueueState = initialQueueState;
const listeners = new Set<() => void>();
let pending: QueueAction[] = [];
let frame: number | undefined;
let timer: number | undefined;

function flush(): void {
  if (frame !== undefined) window.cancelAnimationFrame(frame);
  window.clearTimeout(timer);
  frame = timer = undefined;
  const actions = pending;
  pending = [];
  const next = reduceAll(state, actions);
  if (next === state) return;
  state = next;
  listeners.forEach((listener) => listener());
}

/** Queues `action` for the next frame; a hidden tab gets no frames, so a timer flushes the queue there too. */
function dispatch(action: QueueAction): void {
  pending.push(action);
  if (frame !== undefined) return;
  frame = window.requestAnimationFrame(flush);
  timer = window.setTimeout(flush, 250);
}

const newestIds = async () => (await api<{ item_ids: number[] }>(`${QUEUE}/item_ids?order_dir=DESC`)).item_ids;
const itemsByIds = (item_ids: number[]) => api<SessionQueueItem[]>(`${QUEUE}/items_by_ids`, "POST", { item_ids });
const queueStatus = () => api<QueueAndProcessorStatus>(`${QUEUE}/status`);

/** Reads the newest items again, as many as the page shows, with the counts. */
export async function refetchQueue(): Promise<void> {
  dispatch({ type: "snapshot_requested" });
  const ids = (await newestIds()).slice(0, state.limit);
  const [items, status] = await Promise.all([itemsByIds(ids), queueStatus()]);
  dispatch({ type: "snapshot", items, counts: status.queue });
}

/** Adds the page of items just older than the oldest shown. Ids only grow, so the oldest row is the cursor. */
export async function loadOlderItems(): Promise<void> {
  const oldest = state.rows.at(-1)?.item_id ?? Infinity;
  const ids = (await newestIds()).filter((id) => id < oldest).slice(0, PAGE_ROWS);
  dispatch({ type: "older", items: ids.length > 0 ? await itemsByIds(ids) : [] });
}

let newerWanted = false;
let newerRunning = false;

/** Adds the items newer than the newest shown (new batches, retried copies), with the counts. Calls while a read
 * is on its way make one more read after it, not one each. */
async function loadNewerItems(): Promise<void> {
  newerWanted = true;
  if (newerRunning) return;
  newerRunning = true;
  try {
    while (newerWanted) {
      newerWanted = false;
      const newest = state.rows[0]?.item_id ?? -Infinity;
      const ids = (await newestIds()).filter((id) => id > newest).slice(0, state.limit);
      const [items, status] = await Promise.all([ids.length > 0 ? itemsByIds(ids) : [], queueStatus()]);
      dispatch({ type: "newer", items, counts: status.queue });
    }
  } finally {
    newerRunning = false;
  }
}

export function startQueueStore(): void {
  onResync(() => void refetchQueue().catch(() => undefined));
  onEvent((name, payload) => {
    if (name === "queue_item_status_changed" || name === "invocation_progress" || name === "queue_cleared") {
      dispatch({ type: name, event: payload } as QueueAction);
    } else if (name === "batch_enqueued" || name === "queue_items_retried") {
      void loadNewerItems().catch(() => undefined);
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
