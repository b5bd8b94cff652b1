// Model installs are background jobs (InvokeAI's ModelInstallJob): POST /api/v2/models/install answers one, then
// socket.io events tell how it goes: its downloads, their progress, and how it ends.
import type { ModelInstallJob } from "../api/types";

export type InstallJob = ModelInstallJob;

export function isDone(job: InstallJob): boolean {
  return job.status === "completed" || job.status === "error" || job.status === "cancelled";
}

/** The source as the user typed it: a path, a URL, or a repo id with its variant and subfolder. */
export function sourceText(source: InstallJob["source"]): string {
  switch (source.type) {
    case "url":
      return source.url;
    case "hf": {
      const tail = source.subfolder ? `:${source.variant ?? ""}:${source.subfolder}` : source.variant ? `:${source.variant}` : "";
      return source.repo_id + tail;
    }
    default:
      return source.path;
  }
}

/** The job after a socket event about it, or the same job when the event is about another. */
export function applyInstallEvent(job: InstallJob, name: string, payload: Record<string, unknown>): InstallJob {
  if (payload.id !== job.id) return job;
  const bytes = { bytes: Number(payload.bytes ?? job.bytes), total_bytes: Number(payload.total_bytes ?? job.total_bytes) };
  switch (name) {
    case "model_install_download_started":
    case "model_install_download_progress":
      return { ...job, ...bytes, status: "downloading" };
    case "model_install_downloads_complete":
      return { ...job, status: "downloads_done" };
    case "model_install_started":
      return { ...job, status: "running" };
    case "model_install_complete":
      return { ...job, status: "completed", config_out: (payload.config ?? job.config_out) as InstallJob["config_out"] };
    case "model_install_error":
      return { ...job, status: "error", error: (payload.error ?? null) as string | null, error_reason: (payload.error_type ?? null) as string | null };
    case "model_install_cancelled":
      return { ...job, status: "cancelled" };
    default:
      return job;
  }
}

/** Whether the event is one of an install job's. */
export function isInstallEvent(name: string): boolean {
  return name.startsWith("model_install_");
}

/** What the job is doing or how it ended, in a sentence. */
export function describeJob(job: InstallJob): string {
  const source = sourceText(job.source);
  switch (job.status) {
    case "completed": {
      const config = job.config_out;
      return config ? `Installed ${config.name}: base ${config.base}, type ${config.type}, format ${config.format}` : `Installed ${source}`;
    }
    case "error":
      return `Install of ${source} failed: ${job.error ?? job.error_reason ?? "unknown error"}`;
    case "cancelled":
      return `Install of ${source} cancelled`;
    case "downloading":
      return `Downloading ${source}: ${job.total_bytes > 0 ? `${formatBytes(job.bytes)} of ${formatBytes(job.total_bytes)}` : formatBytes(job.bytes)}`;
    case "downloads_done":
    case "running":
      return `Installing ${source}: probing and recording it…`;
    case "paused":
      return `Install of ${source} paused`;
    default:
      return `Install of ${source} waiting to start…`;
  }
}

/** A size in bytes as people read it. */
export function formatBytes(bytes: number): string {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}
