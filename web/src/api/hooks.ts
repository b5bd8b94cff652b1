import { type QueryKey, useQuery, useQueryClient } from "@tanstack/react-query";
import { useEffect } from "react";
import { api, QUEUE } from "./client";
import { onEvent } from "./events";
import type { ProcessorListing, QueueAndProcessorStatus } from "./types";

/** Refetches the queries under `queryKey` after any of the events `names` (at most once per `delayMs`). */
export function useRefetchOn(names: readonly string[], queryKey: QueryKey, delayMs = 250): void {
  const client = useQueryClient();
  const key = JSON.stringify(queryKey);
  const eventNames = names.join(",");
  useEffect(() => {
    const wanted = new Set(eventNames.split(","));
    let timer: number | undefined;
    const stop = onEvent((name) => {
      if (!wanted.has(name) || timer !== undefined) return;
      timer = window.setTimeout(() => {
        timer = undefined;
        void client.invalidateQueries({ queryKey: JSON.parse(key) });
      }, delayMs);
    });
    return () => {
      stop();
      window.clearTimeout(timer);
    };
  }, [client, key, eventNames, delayMs]);
}

export const STATUS_KEY = ["queue-status"];

const STATUS_EVENTS = [
  "queue_item_status_changed",
  "batch_enqueued",
  "queue_items_retried",
  "queue_cleared",
  "processing_paused_changed",
] as const;

/** The queue's counts and the processors' state, read again after every queue event and every pause or resume (by
 * this page, another one, the CLI or another server; at most each second), after each reconnect (as every query
 * is) and when the window regains focus. */
export function useQueueStatus() {
  useRefetchOn(STATUS_EVENTS, STATUS_KEY, 1000);
  return useQuery({ queryKey: STATUS_KEY, queryFn: () => api<QueueAndProcessorStatus>(`${QUEUE}/status`), refetchOnWindowFocus: "always" });
}

/** How many processors of any process on the database are alive, for a server that runs none of its own (its
 * workers are elsewhere). They come and go with no event, so they are read again every few seconds. */
export function useLiveProcessorCount(enabled: boolean) {
  return useQuery({
    queryKey: ["processors"],
    queryFn: () => api<ProcessorListing[]>(`${QUEUE}/processors`),
    select: (processors) => processors.filter((processor) => processor.is_alive).length,
    enabled,
    refetchInterval: 5000,
  });
}
