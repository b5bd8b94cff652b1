// The queue as the UI shows it, for every page: one snapshot per (re)subscription, then socket.io events only.
import { useSyncExternalStore } from "react";
import { initialQueueState, type QueueAction, queueReducer, type QueueState } from "../lib/queueReducer";
import type { QueueAndProcessorStatus, SessionQueueItem } from "./types";
import { api, QUEUE } from "./client";
import { onEvent, onResync } from "./events";

/** How many of the newest items the snapshot holds. */
const SNAPSHOT_ITEMS = 100;

let state: QueueState = initialQueueState;
const listeners = new Set<() => void>();

function dispatch(action: QueueAction): void {
  const next = queueReducer(state, action);
  if (next === state) return;
  state = next;
  listeners.forEach((listener) => listener());
}

export async function refetchQueue(): Promise<void> {
  dispatch({ type: "snapshot_requested" });
  const { item_ids } = await api<{ item_ids: number[] }>(`${QUEUE}/item_ids?order_dir=DESC`);
  const [items, status] = await Promise.all([
    api<SessionQueueItem[]>(`${QUEUE}/items_by_ids`, "POST", { item_ids: item_ids.slice(0, SNAPSHOT_ITEMS) }),
    api<QueueAndProcessorStatus>(`${QUEUE}/status`),
  ]);
  dispatch({ type: "snapshot", items, counts: status.queue });
}

export function startQueueStore(): void {
  onResync(() => void refetchQueue().catch(() => undefined));
  onEvent((name, payload) => {
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
