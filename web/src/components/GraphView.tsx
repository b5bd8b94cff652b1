// An image's graph, read-only: one box per node (its id and type), one line per edge, laid out in columns by
// depth so that data flows left to right. Loaded only when an image view opens (React.lazy), with its library.
import { Background, Controls, type Edge, type Node, Position, ReactFlow } from "@xyflow/react";
import "@xyflow/react/dist/style.css";

interface GraphJSON {
  nodes: Record<string, { id: string; type: string }>;
  edges: { source: { node_id: string; field: string }; destination: { node_id: string; field: string } }[];
}

const COLUMN = 220;
const ROW = 90;

/** Each node's column: the length of the longest path of edges that reaches it. */
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

export default function GraphView({ graph }: { graph: GraphJSON }) {
  const depth = depths(graph);
  const perColumn = new Map<number, number>();
  const nodes: Node[] = Object.values(graph.nodes).map((node) => {
    const column = depth.get(node.id) ?? 0;
    const row = perColumn.get(column) ?? 0;
    perColumn.set(column, row + 1);
    return {
      id: node.id,
      position: { x: column * COLUMN, y: row * ROW },
      data: { label: `${node.id}\n${node.type}` },
      className: "graph-node",
      sourcePosition: Position.Right,
      targetPosition: Position.Left,
    };
  });
  const edges: Edge[] = graph.edges.map((edge, index) => ({
    id: `e${index}`,
    source: edge.source.node_id,
    target: edge.destination.node_id,
    ariaLabel: `${edge.source.node_id}.${edge.source.field} to ${edge.destination.node_id}.${edge.destination.field}`,
  }));
  return (
    <div className="graph" aria-label="Graph">
      <ReactFlow nodes={nodes} edges={edges} fitView nodesDraggable={false} nodesConnectable={false} elementsSelectable={false} proOptions={{ hideAttribution: true }}>
        <Background />
        <Controls showInteractive={false} />
      </ReactFlow>
    </div>
  );
}
