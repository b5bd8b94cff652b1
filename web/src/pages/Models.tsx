import { useMutation, useQueryClient } from "@tanstack/react-query";
import { Field } from "../components/Field";
import { Table } from "../components/Table";
import { type FormEvent, useState } from "react";
import { api } from "../api/client";
import { INSTALLS_KEY, MODELS_KEY, useInstallJobs, useMissingModels, useModels } from "../api/models";
import { describeJob, formatBytes, type InstallJob, isDone, sourceText } from "../lib/installJob";

const BASES = ["sd-1", "sd-2", "sdxl", "sdxl-refiner", "any"];
const TYPES = ["main", "vae", "lora", "embedding"];

/** A select that overrides what probing the model finds, or keeps it with "As probed" (the empty value). */
function Override({ label, names, value, onChange }: { label: string; names: string[]; value: string; onChange: (value: string) => void }) {
  return (
    <Field label={label}>
      <select value={value} onChange={(event) => onChange(event.target.value)}>
        <option value="">As probed</option>
        {names.map((name) => (
          <option key={name}>{name}</option>
        ))}
      </select>
    </Field>
  );
}

/** A job's download as a bar with its figures, while it downloads. */
function Download({ job }: { job: InstallJob }) {
  if (job.status !== "downloading" && job.status !== "paused") return null;
  const known = job.total_bytes > 0;
  return (
    <span className="download">
      <progress aria-label={`Download of ${sourceText(job.source)}`} max={known ? job.total_bytes : undefined} value={known ? job.bytes : undefined} />
      <span className="muted">
        {formatBytes(job.bytes)}
        {known && ` of ${formatBytes(job.total_bytes)}`}
      </span>
    </span>
  );
}

function InstallJobs({ jobs, onCancel, onPrune }: { jobs: InstallJob[]; onCancel: (id: number) => void; onPrune: () => void }) {
  return (
    <section className="stack" aria-labelledby="jobs-title">
      <div className="row wrap">
        <h2 id="jobs-title" className="grow">
          Installs since the server started
        </h2>
        {jobs.some(isDone) && (
          <button type="button" onClick={onPrune} title="Forget the installs that completed, failed or were cancelled">
            Clear finished
          </button>
        )}
      </div>
      {jobs.length === 0 ? (
        <p className="muted">No install yet: the installs you start above are listed here with their progress.</p>
      ) : (
        <Table label="Install jobs" columns={["Source", "Status", "Actions"]}>
          {jobs.map((job) => (
            <tr key={job.id}>
              <td className="break source">{sourceText(job.source)}</td>
              <td className="break job-status">
                <span className={job.status === "error" ? "error" : undefined}>{job.status.replace("_", " ")}</span>
                {job.status === "error" && job.error && (
                  <span className="muted clamp" title={job.error}>
                    {job.error}
                  </span>
                )}
                {job.status === "completed" && job.config_out && <span className="muted block">as {job.config_out.name}</span>}
                <Download job={job} />
              </td>
              <td>
                {!isDone(job) && (
                  <button type="button" aria-label={`Cancel install of ${sourceText(job.source)}`} onClick={() => onCancel(job.id)}>
                    Cancel
                  </button>
                )}
              </td>
            </tr>
          ))}
        </Table>
      )}
    </section>
  );
}

function MissingModels() {
  const { data: missing } = useMissingModels();
  if (!missing || missing.length === 0) return null;
  return (
    <section className="stack card" aria-labelledby="missing-title">
      <h2 id="missing-title">Models with missing files</h2>
      <p className="hint">Their files are gone from the server's disk, so they cannot be used: put the files back, or remove the models above.</p>
      <ul aria-label="Missing models">
        {missing.map((model) => (
          <li key={model.key}>
            <strong>{model.name}</strong> <span className="muted break">{model.path}</span>
          </li>
        ))}
      </ul>
    </section>
  );
}

export function Models() {
  const { data: models, isLoading, error } = useModels();
  const client = useQueryClient();
  const [source, setSource] = useState("");
  const [base, setBase] = useState("");
  const [type, setType] = useState("");
  const { data: jobs } = useInstallJobs();
  const missingKeys = new Set((useMissingModels().data ?? []).map((model) => model.key));
  const [lastId, setLastId] = useState<number | null>(null);
  const install = useMutation({
    mutationFn: () => {
      const overrides = { ...(base ? { base } : {}), ...(type ? { type } : {}) };
      const body = Object.keys(overrides).length > 0 ? overrides : undefined;
      return api<InstallJob>(`/api/v2/models/install?source=${encodeURIComponent(source.trim())}&inplace=true`, "POST", body);
    },
    onSuccess: (job) => {
      setLastId(job.id);
      client.setQueryData<InstallJob[]>(INSTALLS_KEY, (now) => [job, ...(now ?? []).filter((other) => other.id !== job.id)]);
    },
  });
  const jobAction = useMutation({
    mutationFn: (id: number | null) => api(`/api/v2/models/install${id === null ? "" : `/${id}`}`, "DELETE"),
    onSettled: () => void client.invalidateQueries({ queryKey: INSTALLS_KEY }),
  });
  const job = jobs?.find((candidate) => candidate.id === lastId) ?? null;
  const remove = useMutation({
    mutationFn: (key: string) => api(`/api/v2/models/i/${encodeURIComponent(key)}`, "DELETE"),
    onSettled: () => void client.invalidateQueries({ queryKey: MODELS_KEY }),
  });
  const submit = (event: FormEvent) => {
    event.preventDefault();
    if (source.trim()) install.mutate();
  };
  const baseUnknown = job?.status === "error" && /base/i.test(job.error ?? "");
  const statusText = install.isPending ? `Sending ${source.trim()}…` : install.isError ? `Install refused: ${install.error.message}` : job ? describeJob(job) : "";
  return (
    <div className="stack">
      <h1>Models</h1>
      <form className="card stack" onSubmit={submit} aria-labelledby="install-title">
        <h2 id="install-title">Install a model</h2>
        <Field label="Source">
          <input value={source} onChange={(event) => setSource(event.target.value)} placeholder="/models/model.safetensors, https://… or owner/name" required spellCheck={false} aria-describedby="source-hint" />
        </Field>
        <p className="hint" id="source-hint">
          One of: the absolute path, on the server, of a model file or diffusers folder (used where it is); an http(s) URL of a model file; a Hugging Face repo id such as{" "}
          <code>owner/name</code>, <code>owner/name:fp16</code> or <code>owner/name::subfolder</code>. Downloads go into the models folder.
        </p>
        <div className="grid2">
          <Override label="Base" names={BASES} value={base} onChange={setBase} />
          <Override label="Type" names={TYPES} value={type} onChange={setType} />
        </div>
        <button type="submit" className="primary" disabled={install.isPending}>
          Install
        </button>
        <p role="status" aria-label="Install status" className={install.isError || job?.status === "error" ? "error flush" : "flush"}>
          {statusText}
          {baseUnknown && " — choose the Base (and Type) above and install again."}
        </p>
      </form>
      {jobAction.isError && <p role="alert" className="error">{jobAction.error.message}</p>}
      <InstallJobs jobs={jobs ?? []} onCancel={(id) => jobAction.mutate(id)} onPrune={() => jobAction.mutate(null)} />
      <section className="stack">
        <h2>Installed models</h2>
        {error && <p role="alert" className="error">{error.message}</p>}
        {remove.isError && <p role="alert" className="error">{remove.error.message}</p>}
        <Table label="Installed models" columns={["Name", "Base", "Type", "Format", "Size", "Actions"]} empty={!isLoading && (models ?? []).length === 0 && "No model is installed yet."}>
          {(models ?? []).map((model) => (
            <tr key={model.key}>
              <td title={model.path}>
                {model.name}
                {missingKeys.has(model.key!) && <span className="error block">files missing</span>}
              </td>
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
        </Table>
      </section>
      <MissingModels />
    </div>
  );
}
