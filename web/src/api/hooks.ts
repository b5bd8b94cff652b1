import { type QueryKey, useQuery, useQueryClient } from "@tanstack/react-query";
import { useEffect } from "react";
import { api, QUEUE } from "./client";
import { onEvent } from "./events";
import type { QueueAndProcessorStatus } from "./types";

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

/** The queue's counts and the processor's state, fetched again (at most each second) when items change status:
 * the processor has no events of its own. */
export function useQueueStatus() {
  useRefetchOn(["queue_item_status_changed"], STATUS_KEY, 1000);
  return useQuery({ queryKey: STATUS_KEY, queryFn: () => api<QueueAndProcessorStatus>(`${QUEUE}/status`) });
}
