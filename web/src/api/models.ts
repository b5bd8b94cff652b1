import { useQuery, useQueryClient } from "@tanstack/react-query";
import { useEffect } from "react";
import { applyInstallEvent, type InstallJob, isInstallEvent } from "../lib/installJob";
import { api } from "./client";
import { onEvent, onResync } from "./events";
import type { AnyModelConfig, ModelIdentifier, ModelType } from "./types";

export const MODELS_KEY = ["models"];

/** The installed models, all types; pages filter them. */
export function useModels() {
  return useQuery({
    queryKey: MODELS_KEY,
    queryFn: async () => (await api<{ models: AnyModelConfig[] }>("/api/v2/models/")).models,
  });
}

export function ofType(models: AnyModelConfig[] | undefined, type: ModelType): AnyModelConfig[] {
  return (models ?? []).filter((model) => model.type === type);
}

export function identifier(model: AnyModelConfig): ModelIdentifier {
  return { key: model.key!, hash: model.hash, name: model.name, base: model.base, type: model.type };
}

/** The installed models whose files are gone from the server's disk. */
export function useMissingModels() {
  return useQuery({
    queryKey: [...MODELS_KEY, "missing"],
    queryFn: async () => (await api<{ models: AnyModelConfig[] }>("/api/v2/models/missing")).models,
  });
}

export const INSTALLS_KEY = ["model-installs"];

/** The install jobs since the server started, newest first, kept current by their events (and read again after
 * a reconnect, or when an event names a job not listed yet). */
export function useInstallJobs() {
  const client = useQueryClient();
  useEffect(() => {
    const stopEvents = onEvent((name, payload) => {
      if (!isInstallEvent(name)) return;
      const jobs = client.getQueryData<InstallJob[]>(INSTALLS_KEY);
      if (jobs?.some((job) => job.id === payload.id)) {
        client.setQueryData(INSTALLS_KEY, jobs.map((job) => applyInstallEvent(job, name, payload)));
      } else {
        void client.invalidateQueries({ queryKey: INSTALLS_KEY });
      }
      if (name === "model_install_complete") void client.invalidateQueries({ queryKey: MODELS_KEY });
    });
    const stopResync = onResync(() => void client.invalidateQueries({ queryKey: INSTALLS_KEY }));
    return () => {
      stopEvents();
      stopResync();
    };
  }, [client]);
  return useQuery({
    queryKey: INSTALLS_KEY,
    queryFn: async () => (await api<InstallJob[]>("/api/v2/models/install")).sort((a, b) => b.id - a.id),
  });
}
