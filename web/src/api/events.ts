// The one socket.io connection: its state, the events it brings, and a resync whenever it (re)subscribes.
//
// Queue events carry a number (`seq`) per queue. On each connect the client subscribes with the last number it
// saw, so the server replays what it missed while the socket was down (or says `events_missed` when it no
// longer keeps them); then every resync listener refetches its state, so nothing missed stays wrong. A server that
// restarted numbers from 0 again: its `last_seq` below ours says so.
import { useSyncExternalStore } from "react";
import { io, type Socket } from "socket.io-client";
import { getToken, reportTokenRefused } from "./client";

export type ConnectionState = "Connecting" | "Connected" | "Reconnecting" | "Disconnected";
export type EventListener = (name: string, payload: Record<string, unknown>) => void;

const QUEUE_ID = "default";
const listeners = new Set<EventListener>();
const resyncListeners = new Set<() => void>();
const stateListeners = new Set<() => void>();
let state: ConnectionState = "Connecting";
let lastSeq: number | null = null;
let socket: Socket | null = null;

function setState(next: ConnectionState): void {
  if (next === state) return;
  state = next;
  stateListeners.forEach((listener) => listener());
}

function resync(): void {
  resyncListeners.forEach((listener) => listener());
}

function subscribe(active: Socket): void {
  const request: { queue_id: string; after?: number } = { queue_id: QUEUE_ID };
  if (lastSeq !== null) request.after = lastSeq;
  active.emit("subscribe_queue", request, (answer: { last_seq?: number }) => {
    if (typeof answer?.last_seq === "number" && (lastSeq === null || answer.last_seq < lastSeq)) {
      lastSeq = answer.last_seq;
    }
    setState("Connected");
    resync();
  });
}

/** Opens the connection (once); call `reconnect` after the token changes. */
export function connect(): void {
  if (socket !== null) return;
  const active = io({
    path: "/ws/socket.io",
    transports: ["websocket"],
    auth: (send) => send(getToken() ? { token: getToken() } : {}),
  });
  socket = active;
  active.on("connect", () => subscribe(active));
  active.on("disconnect", () => setState("Reconnecting"));
  active.on("connect_error", (error: Error) => {
    // A refusal for the token does not heal by retrying: ask for one. Anything else: socket.io retries.
    if (!active.active) {
      setState("Disconnected");
      if (/token/i.test(error.message)) reportTokenRefused();
    } else {
      setState("Reconnecting");
    }
  });
  active.onAny((name: string, payload: Record<string, unknown>) => {
    if (typeof payload?.seq === "number") lastSeq = payload.seq;
    if (name === "events_missed") {
      resync();
      return;
    }
    listeners.forEach((listener) => listener(name, payload));
  });
  // After a sleep the socket may look open while it is dead: try at once rather than at the next ping timeout.
  const wake = () => {
    if (document.visibilityState === "visible" && !active.connected) active.connect();
  };
  document.addEventListener("visibilitychange", wake);
  window.addEventListener("online", wake);
}

export function reconnect(): void {
  if (socket === null) return connect();
  socket.disconnect();
  setState("Connecting");
  socket.connect();
}

export function onEvent(listener: EventListener): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

/** Calls `listener` after each (re)subscription, when what was shown may be out of date. */
export function onResync(listener: () => void): () => void {
  resyncListeners.add(listener);
  return () => resyncListeners.delete(listener);
}

export function useConnectionState(): ConnectionState {
  return useSyncExternalStore(
    (listener) => {
      stateListeners.add(listener);
      return () => stateListeners.delete(listener);
    },
    () => state,
  );
}
