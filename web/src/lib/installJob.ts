// What POST /api/v2/models/install answers: a background job (InvokeAI's ModelInstallJob), or, from a server
// that installs at once, the installed model's config, which counts as a job that completed.
export type InstallStatus = "waiting" | "downloading" | "downloads_done" | "running" | "completed" | "error" | "cancelled";

export interface InstallJob {
  id: number | null;
  status: InstallStatus;
  source: string;
  config_out?: Record<string, unknown> | null;
  error?: string | null;
  error_reason?: string | null;
}

export function asInstallJob(answer: Record<string, unknown>, source: string): InstallJob {
  if (typeof answer.status === "string" && "id" in answer) return answer as unknown as InstallJob;
  return { id: null, status: "completed", source, config_out: answer };
}

export function isDone(job: InstallJob): boolean {
  return job.status === "completed" || job.status === "error" || job.status === "cancelled";
}

/** The job after a socket event about it, or the job as it was when the event is about another. */
export function applyInstallEvent(job: InstallJob, name: string, payload: Record<string, unknown>): InstallJob {
  if (job.id === null || payload.id !== job.id) return job;
  switch (name) {
    case "model_install_complete":
      return { ...job, status: "completed", config_out: (payload.config_out ?? payload.config ?? job.config_out) as InstallJob["config_out"] };
    case "model_install_error":
      return { ...job, status: "error", error: (payload.error ?? null) as string | null, error_reason: (payload.error_type ?? payload.error_reason ?? null) as string | null };
    case "model_install_cancelled":
      return { ...job, status: "cancelled" };
    default:
      return job;
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
