// The Generate page's settings, kept across pages and visits (localStorage), and set by "Use these settings".
import { useSyncExternalStore } from "react";
import type { GenerateSettings } from "./batch";

export type FormSettings = Omit<GenerateSettings, "model"> & { model: GenerateSettings["model"] | null };

export const DEFAULT_SETTINGS: FormSettings = {
  model: null,
  vae: null,
  loras: [],
  prompt: "",
  negativePrompt: "",
  width: 512,
  height: 512,
  steps: 30,
  cfgScale: 7.5,
  scheduler: "euler",
  seed: 0,
  randomSeed: true,
  images: 1,
  runs: 1,
};

const STORAGE_KEY = "nodeloom.generate";

/** The settings of the last visit (a model no longer installed is replaced once the models load). */
function stored(): FormSettings {
  try {
    return { ...DEFAULT_SETTINGS, ...JSON.parse(localStorage.getItem(STORAGE_KEY) ?? "{}") };
  } catch {
    return DEFAULT_SETTINGS;
  }
}

let settings = stored();
const listeners = new Set<() => void>();

export function updateSettings(changes: Partial<FormSettings>): void {
  settings = { ...settings, ...changes };
  localStorage.setItem(STORAGE_KEY, JSON.stringify(settings));
  listeners.forEach((listener) => listener());
}

export function useSettings(): FormSettings {
  return useSyncExternalStore(
    (listener) => {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    () => settings,
  );
}
