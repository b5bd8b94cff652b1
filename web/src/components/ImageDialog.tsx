import { useQuery } from "@tanstack/react-query";
import { Field } from "./Field";
import { lazy, Suspense, useEffect, useRef } from "react";
import { api } from "../api/client";
import { UNCATEGORIZED, useGalleryActions } from "../api/gallery";
import type { BoardDTO, ImageDTO } from "../api/types";
import { AuthImage } from "./AuthImage";
import { BoardOptions } from "./BoardOptions";
import { UseSettingsButton } from "./UseSettingsButton";

const GraphView = lazy(() => import("./GraphView"));

export function ImageDialog({ image, boards, onClose }: { image: ImageDTO; boards: BoardDTO[]; onClose: () => void }) {
  const ref = useRef<HTMLDialogElement>(null);
  const actions = useGalleryActions();
  const name = encodeURIComponent(image.image_name);
  const metadata = useQuery({ queryKey: ["metadata", image.image_name], queryFn: () => api<Record<string, unknown> | null>(`/api/v1/images/i/${name}/metadata`) });
  const workflow = useQuery({
    queryKey: ["workflow", image.image_name],
    queryFn: () => api<{ graph: string | null; workflow: string | null }>(`/api/v1/images/i/${name}/workflow`),
  });
  useEffect(() => {
    const dialog = ref.current;
    dialog?.showModal();
    return () => dialog?.close();
  }, []);
  const graph = workflow.data?.graph ? JSON.parse(workflow.data.graph) : null;
  return (
    <dialog ref={ref} className="image-dialog" aria-label={`Image ${image.image_name}`} onClose={onClose}>
      <div className="dialog-head">
        <h2>{image.image_name}</h2>
        <button type="button" onClick={() => ref.current?.close()} aria-label="Close">
          ✕
        </button>
      </div>
      <div className="image-view">
        <AuthImage src={image.image_url} alt="Full size" className="full" />
        <div className="stack">
          <div className="toolbar">
            <button type="button" onClick={() => void actions.star([image.image_name], !image.starred)}>
              {image.starred ? "Unstar" : "Star"}
            </button>
            <a className="button" href={image.image_url} download={image.image_name}>
              Download
            </a>
            <button
              type="button"
              onClick={() => {
                if (window.confirm(`Delete ${image.image_name}?`)) void actions.remove([image.image_name]).then(() => ref.current?.close());
              }}
            >
              Delete
            </button>
            <UseSettingsButton imageName={image.image_name} />
          </div>
          <Field label="Move to board">
            <select value={image.board_id ?? UNCATEGORIZED} onChange={(event) => void actions.move([image.image_name], event.target.value)}>
              <BoardOptions boards={boards} />
            </select>
          </Field>
          {actions.error && <p role="alert" className="error">{actions.error.message}</p>}
          <p className="muted">
            {image.width}×{image.height} · {new Date(image.created_at).toLocaleString()} · {image.image_origin}
          </p>
          <h3>Metadata</h3>
          {metadata.data ? <pre className="metadata">{JSON.stringify(metadata.data, null, 2)}</pre> : <p className="muted">{metadata.isLoading ? "Loading…" : "None recorded."}</p>}
        </div>
      </div>
      <h3>Graph</h3>
      {graph ? (
        <Suspense fallback={<p className="muted">Loading the graph…</p>}>
          <GraphView graph={graph} />
        </Suspense>
      ) : (
        <p className="muted">{workflow.isLoading ? "Loading…" : "No graph recorded."}</p>
      )}
    </dialog>
  );
}
