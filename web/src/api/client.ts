// Every call to the API goes through `api`: same origin, JSON, and the token when the user gave one.
import { useSyncExternalStore } from "react";

const TOKEN_KEY = "nodeloom.token";

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

// Whether the server asked for a token it did not get (a 401, or a refused socket): the app then asks for one.
let tokenNeeded = false;
const tokenListeners = new Set<() => void>();

function setTokenNeeded(needed: boolean): void {
  if (tokenNeeded === needed) return;
  tokenNeeded = needed;
  tokenListeners.forEach((listener) => listener());
}

export function reportTokenRefused(): void {
  setTokenNeeded(true);
}

export function useTokenNeeded(): boolean {
  return useSyncExternalStore(
    (listener) => {
      tokenListeners.add(listener);
      return () => tokenListeners.delete(listener);
    },
    () => tokenNeeded,
  );
}

export function getToken(): string | null {
  return localStorage.getItem(TOKEN_KEY);
}

export function saveToken(token: string): void {
  if (token) localStorage.setItem(TOKEN_KEY, token);
  else localStorage.removeItem(TOKEN_KEY);
  setTokenNeeded(false);
}

export function authHeaders(): Record<string, string> {
  const token = getToken();
  return token ? { Authorization: `Bearer ${token}` } : {};
}

/** The message of a refused request's body (`{detail}`), else its status line. */
async function errorMessage(response: Response): Promise<string> {
  try {
    const body = await response.json();
    if (typeof body.detail === "string") return body.detail;
    if (Array.isArray(body.detail)) {
      return body.detail.map((entry: { loc?: unknown[]; msg?: string }) => `${(entry.loc ?? []).join(".")}: ${entry.msg}`).join("; ");
    }
  } catch {
    // Not JSON: the status says it.
  }
  return `${response.status} ${response.statusText}`;
}

/** The response of a request to the API; throws ApiError for any status but 2xx. */
export async function request(path: string, init: RequestInit = {}): Promise<Response> {
  const response = await fetch(path, { ...init, headers: { ...authHeaders(), ...init.headers } });
  if (response.status === 401) reportTokenRefused();
  if (!response.ok) throw new ApiError(response.status, await errorMessage(response));
  return response;
}

/** The JSON of a request to the API; `body`, if given, is sent as JSON. */
export async function api<T>(path: string, method = "GET", body?: unknown): Promise<T> {
  const init: RequestInit = { method };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers = { "Content-Type": "application/json" };
  }
  const response = await request(path, init);
  const text = await response.text();
  return (text ? JSON.parse(text) : null) as T;
}

export const QUEUE = "/api/v1/queue/default";
