import { useQuery } from "@tanstack/react-query";
import { api } from "./client";
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
