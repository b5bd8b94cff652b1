import { describe, expect, it } from "vitest";
import { buildGraph } from "./batch";
import { depths, type GraphJSON } from "./graphLayout";

describe("depths", () => {
  it("puts every node right of the nodes that feed it", () => {
    const graph = buildGraph(
      {
        model: { key: "m", hash: "h", name: "m", base: "sd-1", type: "main" },
        vae: null,
        loras: [],
        prompt: "p",
        negativePrompt: "",
        width: 512,
        height: 512,
        steps: 10,
        cfgScale: 7,
        scheduler: "euler",
        seed: 1,
        randomSeed: false,
        images: 1,
        runs: 1,
      },
      "p",
      1,
    ) as unknown as GraphJSON;
    const depth = depths(graph);
    expect(Object.fromEntries(depth)).toMatchObject({ model_loader: 0, noise: 0, core_metadata: 0, positive_prompt: 1, denoise_latents: 2, l2i: 3 });
    for (const edge of graph.edges) expect(depth.get(edge.destination.node_id)!).toBeGreaterThan(depth.get(edge.source.node_id)!);
  });

  it("ends on a graph with a cycle", () => {
    const edge = (a: string, b: string) => ({ source: { node_id: a, field: "x" }, destination: { node_id: b, field: "x" } });
    const depth = depths({ nodes: { a: { id: "a", type: "t" }, b: { id: "b", type: "t" } }, edges: [edge("a", "b"), edge("b", "a")] });
    expect(depth.size).toBe(2);
  });
});
