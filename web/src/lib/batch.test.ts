import { describe, expect, it } from "vitest";
import type { ModelIdentifier } from "../api/types";
import { buildBatch, buildGraph, expandPrompt, type GenerateSettings, imageCount, MAX_PROMPTS, MAX_SEED, seeds, settingsFromMetadata } from "./batch";

const sd1: ModelIdentifier = { key: "m1", hash: "h1", name: "tiny", base: "sd-1", type: "main" };
const sdxl: ModelIdentifier = { key: "m2", hash: "h2", name: "tiny-xl", base: "sdxl", type: "main" };
const vae: ModelIdentifier = { key: "v1", hash: "hv", name: "vae", base: "sd-1", type: "vae" };
const lora = (key: string): ModelIdentifier => ({ key, hash: key, name: key, base: "sd-1", type: "lora" });

const settings = (changes: Partial<GenerateSettings> = {}): GenerateSettings => ({
  model: sd1,
  vae: null,
  loras: [],
  prompt: "a red fox",
  negativePrompt: "blurry",
  width: 512,
  height: 768,
  steps: 20,
  cfgScale: 6.5,
  scheduler: "dpmpp_2m",
  seed: 42,
  randomSeed: false,
  images: 1,
  runs: 1,
  ...changes,
});

type Edges = { source: { node_id: string; field: string }; destination: { node_id: string; field: string } }[];
const edgeList = (edges: Edges) => edges.map((e) => `${e.source.node_id}.${e.source.field}>${e.destination.node_id}.${e.destination.field}`);
const inputsOf = (edges: Edges, nodeId: string, field: string) =>
  edges.filter((e) => e.destination.node_id === nodeId && e.destination.field === field).map((e) => e.source.node_id);

describe("buildGraph", () => {
  it("builds the SD-1 text-to-image graph of default_graphs.py", () => {
    const graph = buildGraph(settings(), "a red fox", 42);
    const nodes = graph.nodes as Record<string, Record<string, unknown>>;
    expect(Object.fromEntries(Object.values(nodes).map((n) => [n.id, n.type]))).toEqual({
      noise: "noise",
      denoise_latents: "denoise_latents",
      l2i: "l2i",
      core_metadata: "core_metadata",
      model_loader: "main_model_loader",
      positive_prompt: "compel",
      negative_prompt: "compel",
    });
    expect(nodes.noise).toMatchObject({ seed: 42, width: 512, height: 768 });
    expect(nodes.denoise_latents).toMatchObject({ steps: 20, cfg_scale: 6.5, scheduler: "dpmpp_2m" });
    expect(nodes.negative_prompt.prompt).toBe("blurry");
    expect(nodes.core_metadata).toMatchObject({ generation_mode: "txt2img", model: sd1, seed: 42, positive_prompt: "a red fox" });
    expect(new Set(edgeList(graph.edges as Edges))).toEqual(
      new Set([
        "model_loader.clip>positive_prompt.clip",
        "model_loader.clip>negative_prompt.clip",
        "model_loader.unet>denoise_latents.unet",
        "positive_prompt.conditioning>denoise_latents.positive_conditioning",
        "negative_prompt.conditioning>denoise_latents.negative_conditioning",
        "noise.noise>denoise_latents.noise",
        "core_metadata.metadata>l2i.metadata",
        "model_loader.vae>l2i.vae",
        "denoise_latents.latents>l2i.latents",
      ]),
    );
  });

  it("uses the SDXL loader and prompts with size conditioning and both text encoders", () => {
    const graph = buildGraph(settings({ model: sdxl }), "p", 1);
    const nodes = graph.nodes as Record<string, Record<string, unknown>>;
    expect(nodes.model_loader.type).toBe("sdxl_model_loader");
    expect(nodes.positive_prompt).toMatchObject({ type: "sdxl_compel_prompt", target_width: 512, original_height: 768 });
    expect(nodes.core_metadata.generation_mode).toBe("sdxl_txt2img");
    expect(inputsOf(graph.edges as Edges, "negative_prompt", "clip2")).toEqual(["model_loader"]);
  });

  it("chains the LoRA loaders between the model loader and its users, and decodes with the chosen VAE", () => {
    const graph = buildGraph(settings({ vae, loras: [{ model: lora("a"), weight: 0.5 }, { model: lora("b"), weight: 1 }] }), "p", 1);
    const nodes = graph.nodes as Record<string, Record<string, unknown>>;
    const edges = graph.edges as Edges;
    expect(nodes.lora_loader_0).toMatchObject({ type: "lora_loader", lora: lora("a"), weight: 0.5 });
    expect(inputsOf(edges, "lora_loader_0", "unet")).toEqual(["model_loader"]);
    expect(inputsOf(edges, "lora_loader_1", "clip")).toEqual(["lora_loader_0"]);
    expect(inputsOf(edges, "denoise_latents", "unet")).toEqual(["lora_loader_1"]);
    expect(inputsOf(edges, "positive_prompt", "clip")).toEqual(["lora_loader_1"]);
    expect(inputsOf(edges, "l2i", "vae")).toEqual(["vae_loader"]);
    expect(nodes.vae_loader.vae_model).toEqual(vae);
    expect(nodes.core_metadata).toMatchObject({ vae, loras: [{ model: lora("a"), weight: 0.5 }, { model: lora("b"), weight: 1 }] });
  });

  it("uses the SDXL LoRA loader, which passes both text encoders", () => {
    const graph = buildGraph(settings({ model: sdxl, loras: [{ model: lora("a"), weight: 1 }] }), "p", 1);
    expect((graph.nodes as Record<string, { type: string }>).lora_loader_0.type).toBe("sdxl_lora_loader");
    expect(inputsOf(graph.edges as Edges, "positive_prompt", "clip2")).toEqual(["lora_loader_0"]);
  });
});

describe("seeds", () => {
  it("counts up from a fixed seed, wrapping at the largest", () => {
    expect(seeds({ seed: MAX_SEED - 1, randomSeed: false }, 3)).toEqual([MAX_SEED - 1, MAX_SEED, 0]);
  });
  it("draws each seed when random", () => {
    const draws = [0, 0.5, 0.75];
    expect(seeds({ seed: 7, randomSeed: true }, 3, () => draws.shift()!)).toEqual([0, 2147483648, 3221225472]);
  });
});

describe("expandPrompt", () => {
  it("multiplies each choice group in order", () => {
    expect(expandPrompt("a {red|blue} {cat|dog}")).toEqual(["a red cat", "a red dog", "a blue cat", "a blue dog"]);
  });
  it("leaves a prompt without groups alone, and stops at the limit", () => {
    expect(expandPrompt("plain")).toEqual(["plain"]);
    expect(expandPrompt("{a|b|c|d|e|f|g|h|i|j}{a|b|c|d|e|f|g|h|i|j}{a|b}")).toHaveLength(MAX_PROMPTS);
  });
});

describe("buildBatch", () => {
  it("zips one seed per image into the noise and the metadata, for every run", () => {
    const batch = buildBatch(settings({ images: 2, runs: 2 }));
    expect(batch.runs).toBe(1);
    expect(batch.origin).toBe("web");
    expect(batch.data).toEqual([
      [
        { node_path: "noise", field_name: "seed", items: [42, 43, 44, 45] },
        { node_path: "core_metadata", field_name: "seed", items: [42, 43, 44, 45] },
      ],
    ]);
    expect(imageCount(settings({ images: 2, runs: 2 }))).toBe(4);
  });

  it("adds the prompts as a second group, combined with every seed", () => {
    const batch = buildBatch(settings({ prompt: "a {cat|dog}", images: 3 }));
    expect(batch.data?.[1]).toEqual([
      { node_path: "positive_prompt", field_name: "prompt", items: ["a cat", "a dog"] },
      { node_path: "core_metadata", field_name: "positive_prompt", items: ["a cat", "a dog"] },
    ]);
    expect(imageCount(settings({ prompt: "a {cat|dog}", images: 3 }))).toBe(6);
  });
});

describe("settingsFromMetadata", () => {
  it("restores what the core_metadata node recorded", () => {
    const graph = buildGraph(settings({ vae, loras: [{ model: lora("a"), weight: 0.25 }] }), "a red fox", 99);
    const metadata = (graph.nodes as Record<string, Record<string, unknown>>).core_metadata;
    expect(settingsFromMetadata(metadata)).toEqual({
      prompt: "a red fox",
      negativePrompt: "blurry",
      width: 512,
      height: 768,
      steps: 20,
      cfgScale: 6.5,
      scheduler: "dpmpp_2m",
      model: sd1,
      seed: 99,
      randomSeed: false,
      vae,
      loras: [{ model: lora("a"), weight: 0.25 }],
    });
  });

  it("skips fields that are missing or of the wrong kind, and reads InvokeAI's older LoRA shape", () => {
    expect(settingsFromMetadata({ width: "wide", loras: [{ lora: lora("x"), weight: 1 }, { weight: 2 }] })).toEqual({
      loras: [{ model: lora("x"), weight: 1 }],
    });
  });
});
