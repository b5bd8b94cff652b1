import { useMutation, useQueryClient } from "@tanstack/react-query";
import { Field } from "../components/Field";
import { type FormEvent, useEffect, useState } from "react";
import { api } from "../api/client";
import { onEvent, onResync } from "../api/events";
import { MODELS_KEY, useModels } from "../api/models";
import { applyInstallEvent, asInstallJob, formatBytes, type InstallJob, isDone } from "../lib/installJob";

const BASES = ["sd-1", "sd-2", "sdxl", "sdxl-refiner", "any"];
const TYPES = ["main", "vae", "lora", "embedding"];

function describe(job: InstallJob): string {
  switch (job.status) {
    case "completed": {
      const config = job.config_out ?? {};
      return `Installed ${String(config.name ?? job.source)}: base ${String(config.base ?? "?")}, type ${String(config.type ?? "?")}, format ${String(config.format ?? "?")}`;
    }
    case "error":
      return `Install failed: ${job.error ?? job.error_reason ?? "unknown error"}`;
    case "cancelled":
      return "Install cancelled";
    default:
      return `Installing ${job.source}: ${job.status.replace("_", " ")}…`;
  }
}

/** The job of the last install, followed by socket events until it is done (and read again after a reconnect). */
function useInstallJob() {
  const [job, setJob] = useState<InstallJob | null>(null);
  const client = useQueryClient();
  const running = job !== null && !isDone(job) && job.id !== null ? job.id : null;
  useEffect(() => {
    if (running === null) return;
    const read = () => void api<Record<string, unknown>>(`/api/v2/models/install/${running}`).then((answer) => setJob((now) => (now?.id === running ? asInstallJob(answer, now.source) : now)));
    const stopEvents = onEvent((name, payload) => setJob((now) => now && applyInstallEvent(now, name, payload)));
    const stopResync = onResync(read);
    read();
    return () => {
      stopEvents();
      stopResync();
    };
  }, [running]);
  useEffect(() => {
    if (job !== null && isDone(job)) void client.invalidateQueries({ queryKey: MODELS_KEY });
  }, [job, client]);
  return [job, setJob] as const;
}

export function Models() {
  const { data: models, isLoading, error } = useModels();
  const client = useQueryClient();
  const [source, setSource] = useState("");
  const [base, setBase] = useState("");
  const [type, setType] = useState("");
  const [job, setJob] = useInstallJob();
  const install = useMutation({
    mutationFn: async () => {
      const overrides = { ...(base ? { base } : {}), ...(type ? { type } : {}) };
      const body = Object.keys(overrides).length > 0 ? overrides : undefined;
      const answer = await api<Record<string, unknown>>(`/api/v2/models/install?source=${encodeURIComponent(source.trim())}&inplace=true`, "POST", body);
      return asInstallJob(answer, source.trim());
    },
    onMutate: () => setJob({ id: null, status: "waiting", source: source.trim() }),
    onSuccess: setJob,
    onError: (failure) => setJob({ id: null, status: "error", source: source.trim(), error: failure.message }),
  });
  const remove = useMutation({
    mutationFn: (key: string) => api(`/api/v2/models/i/${encodeURIComponent(key)}`, "DELETE"),
    onSettled: () => void client.invalidateQueries({ queryKey: MODELS_KEY }),
  });
  const submit = (event: FormEvent) => {
    event.preventDefault();
    if (source.trim()) install.mutate();
  };
  const baseUnknown = job?.status === "error" && /base/i.test(job.error ?? "");
  return (
    <div className="stack">
      <h1>Models</h1>
      <form className="card stack" onSubmit={submit} aria-labelledby="install-title">
        <h2 id="install-title">Install a model</h2>
        <Field label="Source">
          <input value={source} onChange={(event) => setSource(event.target.value)} placeholder="/path/on/the/server/to/model" required spellCheck={false} />
        </Field>
        <p className="hint">The absolute path, on the server, of a model file or diffusers folder; it is used where it is.</p>
        <div className="grid2">
          <Field label="Base">
            <select value={base} onChange={(event) => setBase(event.target.value)}>
              <option value="">As probed</option>
              {BASES.map((name) => (
                <option key={name}>{name}</option>
              ))}
            </select>
          </Field>
          <Field label="Type">
            <select value={type} onChange={(event) => setType(event.target.value)}>
              <option value="">As probed</option>
              {TYPES.map((name) => (
                <option key={name}>{name}</option>
              ))}
            </select>
          </Field>
        </div>
        <button type="submit" className="primary" disabled={install.isPending || (job !== null && !isDone(job))}>
          Install
        </button>
        <p role="status" aria-label="Install status" className={job?.status === "error" ? "error" : undefined}>
          {job ? describe(job) : ""}
          {baseUnknown && " — choose the Base (and Type) above and install again."}
        </p>
      </form>
      <section className="stack">
        <h2>Installed models</h2>
        {error && <p role="alert" className="error">{error.message}</p>}
        {remove.isError && <p role="alert" className="error">{remove.error.message}</p>}
        <div className="table-wrap">
          <table aria-label="Installed models">
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Base</th>
                <th scope="col">Type</th>
                <th scope="col">Format</th>
                <th scope="col">Size</th>
                <th scope="col">Actions</th>
              </tr>
            </thead>
            <tbody>
              {(models ?? []).map((model) => (
                <tr key={model.key}>
                  <td title={model.path}>{model.name}</td>
                  <td>{model.base}</td>
                  <td>{model.type}</td>
                  <td>{model.format}</td>
                  <td>{formatBytes(model.file_size)}</td>
                  <td>
                    <button type="button" aria-label={`Remove ${model.name}`} onClick={() => window.confirm(`Remove the model ${model.name} from nodeloom?`) && remove.mutate(model.key!)}>
                      Remove
                    </button>
                  </td>
                </tr>
              ))}
              {!isLoading && (models ?? []).length === 0 && (
                <tr>
                  <td colSpan={6} className="muted">
                    No model is installed yet.
                  </td>
                </tr>
              )}
            </tbody>
          </table>
        </div>
      </section>
    </div>
  );
}
