import { useMutation, useQuery } from "@tanstack/react-query";
import { Field } from "../components/Field";
import { type FormEvent, lazy, Suspense, useEffect, useId, useState } from "react";
import { api, QUEUE } from "../api/client";
import { onEvent } from "../api/events";
import { identifier, ofType, useMissingModels, useModels } from "../api/models";
import { useQueue } from "../api/queueStore";
import type { EnqueueBatchResult, ImageDTO, Scheduler } from "../api/types";
import { AuthImage } from "../components/AuthImage";
import { UseSettingsButton } from "../components/UseSettingsButton";
import { buildBatch, buildGraph, expandPrompt, imageCount, MAX_SEED } from "../lib/batch";
import type { GraphJSON } from "../lib/graphLayout";
import { SCHEDULERS } from "../lib/schedulers";
import { type FormSettings, updateSettings, useSettings } from "../lib/settingsStore";

const GraphView = lazy(() => import("../components/GraphView"));

/** The graph a click on Generate enqueues, drawn when the user opens it. */
function GraphPreview({ settings }: { settings: FormSettings }) {
  const [open, setOpen] = useState(false);
  const model = settings.model;
  return (
    <details className="card" onToggle={(event) => setOpen(event.currentTarget.open)}>
      <summary>Graph</summary>
      {open && model && (
        <Suspense fallback={<p className="muted">Loading the graph…</p>}>
          <GraphView graph={buildGraph({ ...settings, model }, expandPrompt(settings.prompt)[0], settings.seed) as unknown as GraphJSON} />
        </Suspense>
      )}
      {open && !model && <p className="muted">Choose a model first.</p>}
    </details>
  );
}

const SIZE_PRESETS: [string, number, number][] = [
  ["Square 512", 512, 512],
  ["Portrait 512×768", 512, 768],
  ["Landscape 768×512", 768, 512],
  ["Square 1024 (SDXL)", 1024, 1024],
  ["Portrait 832×1216 (SDXL)", 832, 1216],
  ["Landscape 1216×832 (SDXL)", 1216, 832],
];
const RESULTS_KEY = ["images", "latest"];
const RESULTS = 12;

function NumberField({ label, value, onChange, min, max, step = 1 }: { label: string; value: number; onChange: (value: number) => void; min: number; max: number; step?: number }) {
  return (
    <Field label={label}>
      <input
        type="number"
        value={Number.isFinite(value) ? value : ""}
        min={min}
        max={max}
        step={step}
        required
        onChange={(event) => onChange(event.target.valueAsNumber)}
      />
    </Field>
  );
}

function problems(settings: FormSettings): string[] {
  const found: string[] = [];
  if (settings.model === null) found.push("Choose a model (install one on the Models page)");
  for (const [name, value] of [["Width", settings.width], ["Height", settings.height]] as const) {
    if (!Number.isInteger(value) || value % 8 !== 0 || value < 64) found.push(`${name} must be a multiple of 8, at least 64`);
  }
  if (!Number.isInteger(settings.steps) || settings.steps < 1) found.push("Steps must be a whole number of at least 1");
  if (!Number.isFinite(settings.cfgScale) || settings.cfgScale < 1) found.push("CFG scale must be at least 1");
  if (!settings.randomSeed && (!Number.isInteger(settings.seed) || settings.seed < 0 || settings.seed > MAX_SEED)) found.push(`Seed must be a whole number from 0 to ${MAX_SEED}`);
  if (!Number.isInteger(settings.images) || settings.images < 1) found.push("Images must be at least 1");
  if (!Number.isInteger(settings.runs) || settings.runs < 1) found.push("Runs must be at least 1");
  return found;
}

function LoRAs({ settings }: { settings: FormSettings }) {
  const { data: models } = useModels();
  const loras = ofType(models, "lora").filter((lora) => settings.model === null || lora.base === settings.model.base);
  const chosen = settings.loras;
  const unused = loras.filter((lora) => !chosen.some((entry) => entry.model.key === lora.key));
  return (
    <fieldset>
      <legend>LoRAs</legend>
      {chosen.map((entry, index) => (
        <div className="row" key={entry.model.key}>
          <span className="grow">{entry.model.name}</span>
          <Field label="Weight">
            <input
              type="number"
              step={0.05}
              min={-10}
              max={10}
              value={entry.weight}
              onChange={(event) => updateSettings({ loras: chosen.map((other, at) => (at === index ? { ...other, weight: event.target.valueAsNumber } : other)) })}
            />
          </Field>
          <button type="button" aria-label={`Remove LoRA ${entry.model.name}`} onClick={() => updateSettings({ loras: chosen.filter((_, at) => at !== index) })}>
            Remove
          </button>
        </div>
      ))}
      {loras.length === 0 ? (
        <p className="muted">No LoRA for this model is installed.</p>
      ) : (
        <button type="button" disabled={unused.length === 0} onClick={() => updateSettings({ loras: [...chosen, { model: identifier(unused[0]), weight: 0.75 }] })}>
          Add LoRA
        </button>
      )}
    </fieldset>
  );
}

function Progress() {
  const { progress, counts } = useQueue();
  const busy = (counts?.in_progress ?? 0) + (counts?.pending ?? 0) > 0;
  if (!busy && progress === null) return null;
  const percent = progress?.percentage != null ? Math.round(progress.percentage * 100) : null;
  return (
    <section className="card stack" aria-label="Running">
      <div
        role="progressbar"
        aria-label="Progress"
        aria-valuemin={0}
        aria-valuemax={100}
        aria-valuenow={percent ?? undefined}
        className="progress"
      >
        <div className="progress-fill" style={{ width: `${percent ?? 0}%` }} />
      </div>
      <p className="muted">
        {progress ? `Item ${progress.item_id}: ${progress.message}` : "Waiting to start"} · {counts?.pending ?? 0} waiting
      </p>
      {progress?.image && <img className="preview" alt="Preview" src={progress.image.dataURL} width={progress.image.width} height={progress.image.height} />}
    </section>
  );
}

type Result = Pick<ImageDTO, "image_name" | "image_url" | "thumbnail_url">;

/** The newest images: those made while the page is open, as `image_created` events announce them, then the
 * newest of a listing fetched when it opens (and after a reconnect). */
function Results() {
  const [made, setMade] = useState<Result[]>([]);
  useEffect(
    () =>
      onEvent((name, payload) => {
        if (name !== "image_created" || payload.is_intermediate || payload.image_category !== "general") return;
        const image = payload as unknown as Result;
        setMade((shown) => [image, ...shown.filter((other) => other.image_name !== image.image_name)].slice(0, RESULTS));
      }),
    [],
  );
  const { data } = useQuery({
    queryKey: RESULTS_KEY,
    queryFn: () => api<{ items: ImageDTO[] }>(`/api/v1/images/?is_intermediate=false&categories=general&starred_first=false&limit=${RESULTS}`),
  });
  const listed = data?.items ?? [];
  const latest = [...made, ...listed.filter((image) => !made.some((other) => other.image_name === image.image_name))].slice(0, RESULTS);
  return (
    <section aria-label="Results" className="stack">
      <h2>Latest results</h2>
      {latest.length === 0 && <p className="muted">Generated images appear here.</p>}
      <ul className="results">
        {latest.map((image) => (
          <li key={image.image_name} className="card">
            <a href={image.image_url} target="_blank" rel="noreferrer">
              <AuthImage src={image.thumbnail_url} alt={image.image_name} loading="lazy" />
            </a>
            <UseSettingsButton imageName={image.image_name} />
          </li>
        ))}
      </ul>
    </section>
  );
}

export function Generate() {
  const settings = useSettings();
  const { data: models, isLoading } = useModels();
  const mains = ofType(models, "main");
  const missing = new Set((useMissingModels().data ?? []).map((model) => model.key));
  const usable = mains.filter((model) => !missing.has(model.key));
  const vaes = ofType(models, "vae").filter((vae) => settings.model === null || vae.base === settings.model.base);
  const [shown, setShown] = useState<string[]>([]);
  const formId = useId();
  // The first usable model is the default; a model that was removed, or whose files are gone, is not kept.
  const installed = new Set((models ?? []).map((model) => model.key));
  if (usable.length > 0 && (settings.model === null || !usable.some((model) => model.key === settings.model!.key))) {
    queueMicrotask(() => updateSettings({ model: identifier(usable[0]), vae: null, loras: [] }));
  } else if (models !== undefined && ((settings.vae && !installed.has(settings.vae.key)) || settings.loras.some((lora) => !installed.has(lora.model.key)))) {
    queueMicrotask(() => updateSettings({ vae: settings.vae && installed.has(settings.vae.key) ? settings.vae : null, loras: settings.loras.filter((lora) => installed.has(lora.model.key)) }));
  }
  const enqueue = useMutation({
    mutationFn: () => api<EnqueueBatchResult>(`${QUEUE}/enqueue_batch`, "POST", { batch: buildBatch({ ...settings, model: settings.model! }), prepend: false }),
  });
  const submit = (event: FormEvent) => {
    event.preventDefault();
    const found = problems(settings);
    setShown(found);
    if (found.length === 0) enqueue.mutate();
  };
  const count = imageCount({ ...settings, model: settings.model! });
  return (
    <div className="generate">
      <form className="card stack" onSubmit={submit} aria-labelledby={`${formId}-title`} noValidate>
        <h1 id={`${formId}-title`}>Generate</h1>
        <Field label="Model">
          <select
            value={settings.model?.key ?? ""}
            onChange={(event) => {
              const model = mains.find((candidate) => candidate.key === event.target.value);
              if (model) updateSettings({ model: identifier(model), vae: null, loras: [] });
            }}
          >
            {mains.length === 0 && <option value="">{isLoading ? "Loading…" : "No main model installed"}</option>}
            {mains.map((model) => (
              <option key={model.key} value={model.key} disabled={missing.has(model.key)}>
                {model.name} ({model.base}){missing.has(model.key) && " — files missing"}
              </option>
            ))}
          </select>
        </Field>
        {!isLoading && usable.length === 0 && <p className="hint">Install a main model on the Models page first (a path on the server, a URL or a Hugging Face repo id).</p>}
        <Field label="Prompt">
          <textarea rows={4} value={settings.prompt} onChange={(event) => updateSettings({ prompt: event.target.value })} placeholder="a lighthouse at dawn, {oil painting|watercolor}" />
        </Field>
        <p className="hint">Write {"{a|b}"} to make one image set per choice.</p>
        <Field label="Negative prompt">
          <textarea rows={2} value={settings.negativePrompt} onChange={(event) => updateSettings({ negativePrompt: event.target.value })} />
        </Field>
        <Field label="Size preset">
          <select
            value={SIZE_PRESETS.find(([, w, h]) => w === settings.width && h === settings.height)?.[0] ?? ""}
            onChange={(event) => {
              const preset = SIZE_PRESETS.find(([name]) => name === event.target.value);
              if (preset) updateSettings({ width: preset[1], height: preset[2] });
            }}
          >
            <option value="">Custom</option>
            {SIZE_PRESETS.map(([name]) => (
              <option key={name}>{name}</option>
            ))}
          </select>
        </Field>
        <div className="grid2">
          <NumberField label="Width" value={settings.width} min={64} max={4096} step={8} onChange={(width) => updateSettings({ width })} />
          <NumberField label="Height" value={settings.height} min={64} max={4096} step={8} onChange={(height) => updateSettings({ height })} />
          <NumberField label="Steps" value={settings.steps} min={1} max={500} onChange={(steps) => updateSettings({ steps })} />
          <NumberField label="CFG scale" value={settings.cfgScale} min={1} max={200} step={0.5} onChange={(cfgScale) => updateSettings({ cfgScale })} />
        </div>
        <Field label="Scheduler">
          <select value={settings.scheduler} onChange={(event) => updateSettings({ scheduler: event.target.value as Scheduler })}>
            {SCHEDULERS.map((name) => (
              <option key={name}>{name}</option>
            ))}
          </select>
        </Field>
        <div className="grid2">
          <NumberField label="Seed" value={settings.seed} min={0} max={MAX_SEED} onChange={(seed) => updateSettings({ seed })} />
          <label className="check">
            <input type="checkbox" checked={settings.randomSeed} onChange={(event) => updateSettings({ randomSeed: event.target.checked })} />
            Random seed
          </label>
          <NumberField label="Images" value={settings.images} min={1} max={100} onChange={(images) => updateSettings({ images })} />
          <NumberField label="Runs" value={settings.runs} min={1} max={100} onChange={(runs) => updateSettings({ runs })} />
        </div>
        <Field label="VAE">
          <select
            value={settings.vae?.key ?? ""}
            onChange={(event) => {
              const vae = vaes.find((candidate) => candidate.key === event.target.value);
              updateSettings({ vae: vae ? identifier(vae) : null });
            }}
          >
            <option value="">The model's own</option>
            {vaes.map((vae) => (
              <option key={vae.key} value={vae.key}>
                {vae.name}
              </option>
            ))}
          </select>
        </Field>
        <LoRAs settings={settings} />
        {shown.length > 0 && (
          <ul role="alert" className="error">
            {shown.map((problem) => (
              <li key={problem}>{problem}</li>
            ))}
          </ul>
        )}
        {enqueue.isError && <p role="alert" className="error">{enqueue.error.message}</p>}
        <button type="submit" className="primary" disabled={enqueue.isPending}>
          Generate
        </button>
        <p className="muted" aria-live="polite">
          {Number.isFinite(count) && count > 0 ? `${count} image${count === 1 ? "" : "s"} per click` : ""}
          {enqueue.data ? ` · the last click queued ${enqueue.data.enqueued} item${enqueue.data.enqueued === 1 ? "" : "s"}` : ""}
        </p>
      </form>
      <div className="stack">
        <Progress />
        <Results />
        <GraphPreview settings={settings} />
      </div>
    </div>
  );
}
