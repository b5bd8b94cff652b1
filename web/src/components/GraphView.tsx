// An image's graph, read-only: one box per node (its id and type), one line per edge, laid out in columns by
// depth so that data flows left to right. Loaded only when an image view opens (React.lazy), with its library.
import { Background, Controls, type Edge, type Node, Position, ReactFlow } from "@xyflow/react";
import "@xyflow/react/dist/style.css";
import { depths, type GraphJSON } from "../lib/graphLayout";


const COLUMN = 220;
const ROW = 90;

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
      <ReactFlow nodes={nodes} edges={edges} colorMode="system" fitView nodesDraggable={false} nodesConnectable={false} elementsSelectable={false} proOptions={{ hideAttribution: true }}>
        <Background />
        <Controls showInteractive={false} />
      </ReactFlow>
    </div>
  );
}
