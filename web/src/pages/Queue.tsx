import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { memo, useCallback, useEffect, useRef, useState } from "react";
import { api, ApiError, QUEUE } from "../api/client";
import { Table } from "../components/Table";
import { STATUS_KEY, useQueueStatus } from "../api/hooks";
import { loadOlderItems, refetchQueue, useQueue } from "../api/queueStore";
import { durationSeconds, isFinished, MAX_ROWS, type Progress, type QueueRow, STATUS_LABELS } from "../lib/queueReducer";

interface NodeStats {
  node_type: string;
  num_calls: number;
  time_used_seconds: number;
  peak_vram_gb: number;
}

interface ItemStats {
  node_stats: NodeStats[];
  graph_stats: { execution_time_seconds: number; wall_time_seconds: number | null; ram_usage_gb: number | null };
  model_cache_stats: Record<string, number>;
  vram_usage_gb: number | null;
}

const CACHE_FIGURES: [string, string][] = [
  ["cache_hits", "Cache hits"],
  ["cache_misses", "Cache misses"],
  ["high_water_mark_gb", "High-water mark (GB)"],
  ["cache_size_gb", "Cache size (GB)"],
  ["total_usage_gb", "In use (GB)"],
  ["models_cached", "Models cached"],
  ["models_cleared", "Models cleared"],
];

const TIME = new Intl.DateTimeFormat(undefined, { timeStyle: "medium" });
const time = (value: string | null) => (value === null ? "" : TIME.format(new Date(value)));
const seconds = (value: number | null) => (value === null ? "" : `${value.toFixed(1)} s`);

/** Re-renders each second while `active`, for the running item's duration. */
function useTick(active: boolean): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    if (!active) return;
    const timer = window.setInterval(() => setNow(Date.now()), 1000);
    return () => window.clearInterval(timer);
  }, [active]);
  return now;
}

const STATS_COLUMNS = ["Node type", "Calls", "Seconds", "VRAM (GB)"];

function Details({ row }: { row: QueueRow }) {
  const finished = isFinished(row.status);
  const stats = useQuery({
    queryKey: ["queue-stats", row.item_id, row.status],
    enabled: finished,
    retry: false,
    queryFn: () => api<ItemStats>(`${QUEUE}/i/${row.item_id}/stats`),
  });
  const ref = useRef<HTMLElement>(null);
  // On a phone the details sit below the table, out of sight: bring them in when another item is opened, and
  // again when its statistics arrive (the page was too short to scroll them to the top before).
  const loaded = stats.data !== undefined;
  useEffect(() => {
    ref.current?.scrollIntoView({ block: "start", behavior: "smooth" });
  }, [row.item_id, loaded]);
  return (
    <section ref={ref} className="card stack item-details" aria-label={`Item ${row.item_id}`}>
      <h2>
        Item {row.item_id} · {STATUS_LABELS[row.status]}
      </h2>
      <p className="muted">Batch {row.batch_id}</p>
      {row.error_type && (
        <div className="stack">
          <p className="error">
            <strong>{row.error_type}</strong>: {row.error_message}
          </p>
          {row.error_traceback && <pre className="traceback">{row.error_traceback}</pre>}
        </div>
      )}
      {!finished && <p className="muted">Statistics appear when the item finishes.</p>}
      {stats.isError && <p className="muted">{stats.error instanceof ApiError && stats.error.status === 404 ? "No statistics: no node of this item ran." : stats.error.message}</p>}
      {stats.data && (
        <>
          <Table label="Statistics" columns={STATS_COLUMNS}>
            {stats.data.node_stats.map((node) => (
              <tr key={node.node_type}>
                <td>{node.node_type}</td>
                <td>{node.num_calls}</td>
                <td>{node.time_used_seconds.toFixed(3)}</td>
                <td>{node.peak_vram_gb.toFixed(3)}</td>
              </tr>
            ))}
          </Table>
          <p>
            Total {stats.data.graph_stats.execution_time_seconds.toFixed(2)} s
            {stats.data.graph_stats.wall_time_seconds != null && ` (wall ${stats.data.graph_stats.wall_time_seconds.toFixed(2)} s)`}
            {stats.data.graph_stats.ram_usage_gb != null && ` · RAM ${stats.data.graph_stats.ram_usage_gb.toFixed(2)} GB`}
          </p>
          <h3>Model cache</h3>
          <dl className="figures" aria-label="Model cache">
            {CACHE_FIGURES.map(([key, label]) => (
              <div key={key}>
                <dt>{label}</dt>
                <dd>{typeof stats.data.model_cache_stats[key] === "number" ? Number(stats.data.model_cache_stats[key].toFixed(2)) : "–"}</dd>
              </div>
            ))}
          </dl>
        </>
      )}
    </section>
  );
}

interface RowProps {
  row: QueueRow;
  selected: boolean;
  progress: Progress | null;
  /** The time a running row's duration runs to; undefined for the others, so that the clock re-renders only them. */
  now: number | undefined;
  onSelect: (itemId: number) => void;
  run: (path: string, body?: unknown) => void;
}

/** One item's row; re-rendered only when what it shows changes (the reducer keeps unchanged rows' objects). A
 * click anywhere on it but an enabled button opens its details (disabled buttons let clicks through, see CSS). */
/** The heads of the cells a `Row` draws, in its order. */
const ITEM_COLUMNS = ["Item", "Status", "Actions", "Batch", "Origin", "Created", "Started", "Finished", "Duration", "Error"];

const Row = memo(function Row({ row, selected, progress, now, onSelect, run }: RowProps) {
  return (
    <tr data-item-id={row.item_id} data-status={row.status} aria-selected={selected} onClick={() => onSelect(row.item_id)} className={selected ? "selected" : undefined}>
      <td>
        <button type="button" className="link" aria-label={`Details of item ${row.item_id}`} onClick={() => onSelect(row.item_id)}>
          {row.item_id}
        </button>
      </td>
      <td>
        <span className={`status status-${row.status}`}>{STATUS_LABELS[row.status]}</span>
        {progress && <progress aria-label={`Progress of item ${row.item_id}`} max={1} value={progress.percentage ?? undefined} />}
      </td>
      <td>
        <div className="actions">
          <button type="button" disabled={isFinished(row.status)} onClick={(event) => (event.stopPropagation(), run(`i/${row.item_id}/cancel`))}>
            Cancel
          </button>
          <button
            type="button"
            disabled={row.status !== "failed" && row.status !== "canceled"}
            onClick={(event) => (event.stopPropagation(), run("retry_items_by_id", [row.item_id]))}
          >
            Retry
          </button>
        </div>
      </td>
      <td title={row.batch_id}>{row.batch_id.slice(0, 8)}</td>
      <td>{row.origin ?? ""}</td>
      <td>{time(row.created_at)}</td>
      <td>{time(row.started_at)}</td>
      <td>{time(row.completed_at)}</td>
      <td>{seconds(durationSeconds(row, now))}</td>
      <td className="error-cell" title={row.error_message ?? undefined}>
        {row.error_type ?? ""}
      </td>
    </tr>
  );
});

export function Queue() {
  const { rows, limit, counts, progress } = useQueue();
  const older = useMutation({ mutationFn: loadOlderItems });
  const { data: status } = useQueueStatus();
  const client = useQueryClient();
  const [selected, setSelected] = useState<number | null>(null);
  const now = useTick(rows.some((row) => row.status === "in_progress"));
  const action = useMutation({
    mutationFn: ({ path, body }: { path: string; body?: unknown }) => api(`${QUEUE}/${path}`, "PUT", body),
    onSuccess: (_, { path }) => {
      if (path.startsWith("processor")) void client.invalidateQueries({ queryKey: STATUS_KEY });
      // Pruning sends no event: fetch what is left.
      if (path === "prune") void refetchQueue();
    },
  });
  const { mutate } = action;
  const run = useCallback((path: string, body?: unknown) => mutate({ path, body }), [mutate]);
  const selectedRow = rows.find((row) => row.item_id === selected) ?? null;
  const batchRow = selectedRow ?? rows.find((row) => row.status === "in_progress") ?? null;
  const running = counts?.item_id ?? null;
  const paused = status !== undefined && !status.processor.is_processing;
  return (
    <div className="stack">
      <h1>Queue</h1>
      <div className="toolbar" role="toolbar" aria-label="Queue actions">
        <button type="button" onClick={() => run(paused ? "processor/resume" : "processor/pause")}>
          {paused ? "Resume" : "Pause"}
        </button>
        <button
          type="button"
          disabled={batchRow === null}
          title={batchRow ? `Cancel the unfinished items of batch ${batchRow.batch_id}` : "Select an item first"}
          onClick={() => batchRow && run("cancel_by_batch_ids", { batch_ids: [batchRow.batch_id] })}
        >
          Cancel batch
        </button>
        <button type="button" onClick={() => window.confirm("Delete every item of the queue, stopping the running one?") && run("clear")}>
          Clear
        </button>
        <button type="button" onClick={() => run("prune")} title="Delete the finished items">
          Prune
        </button>
      </div>
      {action.isError && <p role="alert" className="error">{action.error.message}</p>}
      <dl className="figures" aria-label="Counts">
        {(["pending", "in_progress", "completed", "failed", "canceled", "total"] as const).map((key) => (
          <div key={key}>
            <dt>{key === "total" ? "Total" : STATUS_LABELS[key]}</dt>
            <dd>{counts?.[key] ?? "–"}</dd>
          </div>
        ))}
      </dl>
      {running !== null && !rows.some((row) => row.item_id === running) && (
        <p className="row wrap">
          <span>
            Item {running} is running, older than the rows shown{progress?.item_id === running && progress.message ? `: ${progress.message}` : ""}.
          </span>
          {progress?.item_id === running && <progress aria-label={`Progress of item ${running}`} max={1} value={progress.percentage ?? undefined} />}
        </p>
      )}
      <div className="queue-layout">
        <Table label="Queue items" className="queue-table" columns={ITEM_COLUMNS} empty={rows.length === 0 && "The queue is empty."}>
          {rows.map((row) => (
            <Row
              key={row.item_id}
              row={row}
              selected={row.item_id === selected}
              progress={row.status === "in_progress" && progress?.item_id === row.item_id ? progress : null}
              now={row.status === "in_progress" ? now : undefined}
              onSelect={setSelected}
              run={run}
            />
          ))}
        </Table>
        {selectedRow && <Details row={selectedRow} />}
      </div>
      {counts && counts.total > rows.length && (
        <div className="row wrap">
          <p className="muted">
            Showing the newest {rows.length} of {counts.total} items.
          </p>
          {limit < MAX_ROWS ? (
            <button type="button" onClick={() => older.mutate()} disabled={older.isPending}>
              Load older
            </button>
          ) : (
            <p className="muted">The page keeps at most the newest {MAX_ROWS} items.</p>
          )}
          {older.isError && <p role="alert" className="error">{older.error.message}</p>}
        </div>
      )}
    </div>
  );
}
