// The text-to-image batch of the Generate page: the graph nodeloom's default_graphs.py builds (same node ids), with
// a VAE and LoRAs spliced in, and the seeds and prompts as batch data so that one batch makes every image.
import type { Batch, BatchDatum, GraphJSON, ModelIdentifier, Scheduler } from "../api/types";

export interface LoRASetting {
  model: ModelIdentifier;
  weight: number;
}

export interface GenerateSettings {
  model: ModelIdentifier;
  vae: ModelIdentifier | null;
  loras: LoRASetting[];
  prompt: string;
  negativePrompt: string;
  width: number;
  height: number;
  steps: number;
  cfgScale: number;
  scheduler: Scheduler;
  seed: number;
  randomSeed: boolean;
  /** Images per run: each gets its own seed. */
  images: number;
  /** Runs of the batch: each with the next seeds. */
  runs: number;
}

export const MAX_SEED = 4294967295;
export const MAX_PROMPTS = 100;
export const ORIGIN = "web";

const DENOISE = "denoise_latents";
const DECODE = "l2i";
const METADATA = "core_metadata";
const LOADER = "model_loader";
const POSITIVE = "positive_prompt";
const NEGATIVE = "negative_prompt";
const NOISE = "noise";
const VAE_LOADER = "vae_loader";

type Node = Record<string, unknown> & { id: string; type: string };
type Edge = NonNullable<GraphJSON["edges"]>[number];

function edge(source: string, sourceField: string, destination: string, destinationField: string): Edge {
  return {
    source: { node_id: source, field: sourceField },
    destination: { node_id: destination, field: destinationField },
  };
}

/** The prompts a prompt stands for: each `{a|b|c}` group multiplies them, in order; at most `MAX_PROMPTS`. */
export function expandPrompt(prompt: string): string[] {
  const group = /\{([^{}]*)\}/.exec(prompt);
  if (group === null) return [prompt];
  const before = prompt.slice(0, group.index);
  const after = prompt.slice(group.index + group[0].length);
  const expanded: string[] = [];
  for (const choice of group[1].split("|")) {
    for (const rest of expandPrompt(before + choice + after)) {
      if (expanded.length === MAX_PROMPTS) return expanded;
      expanded.push(rest);
    }
  }
  return expanded;
}

/** The seeds of `count` images: from `seed` upwards (wrapping at MAX_SEED), or drawn at random. */
export function seeds(settings: Pick<GenerateSettings, "seed" | "randomSeed">, count: number, random = Math.random): number[] {
  return Array.from({ length: count }, (_, index) =>
    settings.randomSeed ? Math.floor(random() * (MAX_SEED + 1)) : (settings.seed + index) % (MAX_SEED + 1),
  );
}

export function buildGraph(settings: GenerateSettings, prompt: string, seed: number): GraphJSON {
  const sdxl = settings.model.base === "sdxl";
  const { width, height, steps, scheduler } = settings;
  const shared = { steps, cfg_scale: settings.cfgScale, scheduler };
  const nodes: Node[] = [
    { id: NOISE, type: "noise", seed, width, height },
    { id: DENOISE, type: "denoise_latents", ...shared },
    { id: DECODE, type: "l2i" },
    {
      id: METADATA,
      type: "core_metadata",
      generation_mode: sdxl ? "sdxl_txt2img" : "txt2img",
      model: settings.model,
      positive_prompt: prompt,
      negative_prompt: settings.negativePrompt,
      width,
      height,
      seed,
      ...shared,
      ...(settings.vae ? { vae: settings.vae } : {}),
      ...(settings.loras.length ? { loras: settings.loras.map((lora) => ({ model: lora.model, weight: lora.weight })) } : {}),
    },
  ];
  const sizes = sdxl ? { original_width: width, original_height: height, target_width: width, target_height: height } : {};
  const promptType = sdxl ? "sdxl_compel_prompt" : "compel";
  nodes.push(
    { id: LOADER, type: sdxl ? "sdxl_model_loader" : "main_model_loader", model: settings.model },
    { id: POSITIVE, type: promptType, prompt, ...sizes },
    { id: NEGATIVE, type: promptType, prompt: settings.negativePrompt, ...sizes },
  );
  const clips = sdxl ? ["clip", "clip2"] : ["clip"];
  const edges: Edge[] = [
    edge(POSITIVE, "conditioning", DENOISE, "positive_conditioning"),
    edge(NEGATIVE, "conditioning", DENOISE, "negative_conditioning"),
    edge(NOISE, "noise", DENOISE, "noise"),
    edge(METADATA, "metadata", DECODE, "metadata"),
    edge(DENOISE, "latents", DECODE, "latents"),
  ];
  // Each LoRA loader takes the UNet and CLIPs of the one before it, the first the model loader's.
  let last = LOADER;
  settings.loras.forEach((lora, index) => {
    const id = `lora_loader_${index}`;
    nodes.push({ id, type: sdxl ? "sdxl_lora_loader" : "lora_loader", lora: lora.model, weight: lora.weight });
    for (const field of ["unet", ...clips]) edges.push(edge(last, field, id, field));
    last = id;
  });
  edges.push(edge(last, "unet", DENOISE, "unet"));
  for (const field of clips) {
    edges.push(edge(last, field, POSITIVE, field), edge(last, field, NEGATIVE, field));
  }
  if (settings.vae) {
    nodes.push({ id: VAE_LOADER, type: "vae_loader", vae_model: settings.vae });
    edges.push(edge(VAE_LOADER, "vae", DECODE, "vae"));
  } else {
    edges.push(edge(LOADER, "vae", DECODE, "vae"));
  }
  return { nodes: Object.fromEntries(nodes.map((node) => [node.id, node])), edges } as GraphJSON;
}

/** One batch for every image the settings ask for: `images × runs` seeds zipped into the noise and the metadata,
 * times each prompt the prompt expands to (zipped into the positive prompt and the metadata). */
export function buildBatch(settings: GenerateSettings, random = Math.random): Batch {
  const prompts = expandPrompt(settings.prompt);
  const seedList = seeds(settings, settings.images * settings.runs, random);
  const datum = (node_path: string, field_name: string, items: BatchDatum["items"]): BatchDatum => ({
    node_path,
    field_name,
    items,
  });
  const data: BatchDatum[][] = [[datum(NOISE, "seed", seedList), datum(METADATA, "seed", seedList)]];
  if (prompts.length > 1) {
    data.push([datum(POSITIVE, "prompt", prompts), datum(METADATA, "positive_prompt", prompts)]);
  }
  return { origin: ORIGIN, graph: buildGraph(settings, prompts[0], seedList[0]), data, runs: 1 };
}

/** How many images a batch of these settings makes. */
export function imageCount(settings: GenerateSettings): number {
  return settings.images * settings.runs * expandPrompt(settings.prompt).length;
}

/** The settings an image's recorded metadata (its `core_metadata`) restores; the fields it lacks are left out. */
export function settingsFromMetadata(metadata: Record<string, unknown>): Partial<GenerateSettings> {
  const restored: Partial<GenerateSettings> = {};
  const text = (key: string) => (typeof metadata[key] === "string" ? (metadata[key] as string) : undefined);
  const number = (key: string) => (typeof metadata[key] === "number" ? (metadata[key] as number) : undefined);
  const model = (value: unknown) =>
    typeof value === "object" && value !== null && typeof (value as ModelIdentifier).key === "string"
      ? (value as ModelIdentifier)
      : undefined;
  const set = <K extends keyof GenerateSettings>(key: K, value: GenerateSettings[K] | undefined) => {
    if (value !== undefined) restored[key] = value;
  };
  set("prompt", text("positive_prompt"));
  set("negativePrompt", text("negative_prompt"));
  set("width", number("width"));
  set("height", number("height"));
  set("steps", number("steps"));
  set("cfgScale", number("cfg_scale"));
  set("scheduler", text("scheduler") as Scheduler | undefined);
  set("model", model(metadata.model));
  const seed = number("seed");
  if (seed !== undefined) {
    restored.seed = seed;
    restored.randomSeed = false;
  }
  if ("vae" in metadata) restored.vae = model(metadata.vae) ?? null;
  if (Array.isArray(metadata.loras)) {
    restored.loras = metadata.loras.flatMap((entry: Record<string, unknown>) => {
      const lora = model(entry.model ?? entry.lora);
      return lora && typeof entry.weight === "number" ? [{ model: lora, weight: entry.weight }] : [];
    });
  }
  return restored;
}
