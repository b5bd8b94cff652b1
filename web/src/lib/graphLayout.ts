export interface GraphJSON {
  nodes: Record<string, { id: string; type: string }>;
  edges: { source: { node_id: string; field: string }; destination: { node_id: string; field: string } }[];
}

/** Each node's column in the graph view: the length of the longest path of edges that reaches it, so that every
 * edge runs left to right. */
export function depths(graph: GraphJSON): Map<string, number> {
  const depth = new Map(Object.keys(graph.nodes).map((id) => [id, 0]));
  // Longest paths in a DAG by relaxing every edge once per node: graphs here have tens of nodes.
  for (let round = 0; round < depth.size; round++) {
    let changed = false;
    for (const edge of graph.edges) {
      const next = (depth.get(edge.source.node_id) ?? 0) + 1;
      if (next > (depth.get(edge.destination.node_id) ?? 0)) {
        depth.set(edge.destination.node_id, next);
        changed = true;
      }
    }
    if (!changed) break;
  }
  return depth;
}
