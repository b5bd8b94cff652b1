import { useQueryClient } from "@tanstack/react-query";
import { Field } from "./components/Field";
import { type FormEvent, useEffect, useRef, useState } from "react";
import { saveToken, useTokenNeeded } from "./api/client";
import { reconnect, useConnectionState } from "./api/events";
import { useLiveProcessorCount, useQueueStatus } from "./api/hooks";
import { useQueue } from "./api/queueStore";
import type { QueueAndProcessorStatus, QueueStatus } from "./api/types";
import { Gallery } from "./pages/Gallery";
import { Generate } from "./pages/Generate";
import { Models } from "./pages/Models";
import { Queue } from "./pages/Queue";
import { Link, usePath } from "./router";

const PAGES: Record<string, { title: string; page: () => React.JSX.Element }> = {
  "/": { title: "Generate", page: Generate },
  "/queue": { title: "Queue", page: Queue },
  "/gallery": { title: "Gallery", page: Gallery },
  "/models": { title: "Models", page: Models },
};

/** The processors' state; whether one is busy comes from the live queue counts, which events keep current. A
 * server that runs no processor itself (`--no-processor`) shows those of its workers elsewhere: `elsewhere` is how
 * many are alive. */
function processorText(status: QueueAndProcessorStatus | undefined, counts: QueueStatus | null, elsewhere: number | undefined): string {
  if (status === undefined) return "…";
  const { processor } = status;
  if (!processor.is_started && elsewhere === undefined) return "…";
  if (processor.is_started ? processor.is_alive === false : elsewhere === 0) return "Stopped";
  if (!processor.is_processing) return "Paused";
  const running = counts ?? status.queue;
  return running.in_progress > 0 ? `Running · item ${running.item_id ?? "?"}` : "Running · Idle";
}

function Header() {
  const connection = useConnectionState();
  const { data } = useQueueStatus();
  const { counts } = useQueue();
  const { data: elsewhere } = useLiveProcessorCount(data !== undefined && !data.processor.is_started);
  const processor = processorText(data, counts, elsewhere);
  return (
    <header className="app-header">
      <span className="brand">nodeloom</span>
      <nav aria-label="Pages">
        {Object.entries(PAGES).map(([path, { title }]) => (
          <Link key={path} to={path}>
            {title}
          </Link>
        ))}
      </nav>
      <div className="header-status">
        <span role="status" aria-label="Connection" className={`pill ${connection === "Connected" ? "ok" : "warn"}`}>
          {connection}
        </span>
        <span aria-label="Processor" className={`pill ${processor.startsWith("Running") ? "ok" : "warn"}`}>
          {processor}
        </span>
      </div>
    </header>
  );
}

function TokenDialog() {
  const ref = useRef<HTMLDialogElement>(null);
  const [token, setToken] = useState("");
  const client = useQueryClient();
  useEffect(() => ref.current?.showModal(), []);
  const submit = (event: FormEvent) => {
    event.preventDefault();
    saveToken(token.trim());
    reconnect();
    void client.invalidateQueries();
  };
  return (
    <dialog ref={ref} aria-label="Token" onCancel={(event) => event.preventDefault()}>
      <form onSubmit={submit} className="stack">
        <h2>A token is needed</h2>
        <p>This server asks for a token. Make one on the server with <code>nodeloom tokens create NAME</code>.</p>
        <Field label="Token">
          <input type="password" autoComplete="current-password" value={token} onChange={(event) => setToken(event.target.value)} autoFocus />
        </Field>
        <button type="submit">Save token</button>
      </form>
    </dialog>
  );
}

export function App() {
  const path = usePath();
  const tokenNeeded = useTokenNeeded();
  const page = PAGES[path] ?? PAGES["/"];
  useEffect(() => {
    document.title = `${page.title} · nodeloom`;
  }, [page]);
  const Page = page.page;
  return (
    <>
      <Header />
      <main>
        <Page />
      </main>
      {tokenNeeded && <TokenDialog />}
    </>
  );
}
