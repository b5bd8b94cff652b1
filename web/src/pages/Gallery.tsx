import { type DragEvent, type FormEvent, type RefObject, useEffect, useRef, useState } from "react";
import { Field } from "../components/Field";
import { UNCATEGORIZED, useBoardImages, useBoards, useGalleryActions } from "../api/gallery";
import type { BoardDTO } from "../api/types";
import { AuthImage } from "../components/AuthImage";
import { BoardOptions } from "../components/BoardOptions";
import { ImageDialog } from "../components/ImageDialog";

function NameForm({ label, initial, submitLabel, onSubmit, onCancel }: { label: string; initial: string; submitLabel: string; onSubmit: (name: string) => void; onCancel: () => void }) {
  const [name, setName] = useState(initial);
  const submit = (event: FormEvent) => {
    event.preventDefault();
    if (name.trim()) onSubmit(name.trim());
  };
  return (
    <form className="row" onSubmit={submit}>
      <Field label={label} className="grow">
        <input value={name} onChange={(event) => setName(event.target.value)} autoFocus required maxLength={300} />
      </Field>
      <button type="submit">{submitLabel}</button>
      <button type="button" onClick={onCancel}>
        Cancel
      </button>
    </form>
  );
}

function DeleteBoard({ board, onDone }: { board: BoardDTO; onDone: () => void }) {
  const ref = useRef<HTMLDialogElement>(null);
  const actions = useGalleryActions();
  useEffect(() => ref.current?.showModal(), []);
  const remove = (includeImages: boolean) => void actions.deleteBoard(board.board_id, includeImages).then(() => ref.current?.close());
  return (
    <dialog ref={ref} aria-label={`Delete board ${board.board_name}`} onClose={onDone}>
      <div className="stack">
        <h2>Delete the board “{board.board_name}”?</h2>
        <p>It holds {board.image_count} image{board.image_count === 1 ? "" : "s"}. Keep them (they become uncategorized), or delete them too?</p>
        <div className="toolbar">
          <button type="button" onClick={() => remove(false)}>
            Delete board, keep images
          </button>
          <button type="button" className="danger" onClick={() => remove(true)}>
            Delete board and images
          </button>
          <button type="button" onClick={() => ref.current?.close()}>
            Cancel
          </button>
        </div>
        {actions.error && <p role="alert" className="error">{actions.error.message}</p>}
      </div>
    </dialog>
  );
}

function Boards({ current, onSelect }: { current: string; onSelect: (boardId: string) => void }) {
  const { data } = useBoards();
  const actions = useGalleryActions();
  const [creating, setCreating] = useState(false);
  const [renaming, setRenaming] = useState<string | null>(null);
  const [deleting, setDeleting] = useState<BoardDTO | null>(null);
  const entries: { id: string; name: string; count: number; cover: string | null; board: BoardDTO | null }[] = [
    { id: UNCATEGORIZED, name: "Uncategorized", count: data?.uncategorizedCount ?? 0, cover: null, board: null },
    ...(data?.boards ?? []).map((board) => ({ id: board.board_id, name: board.board_name, count: board.image_count, cover: board.cover_image_name, board })),
  ];
  return (
    <aside className="boards stack">
      <h2>Boards</h2>
      {creating ? (
        <NameForm label="Board name" initial="" submitLabel="Create" onCancel={() => setCreating(false)} onSubmit={(name) => void actions.createBoard(name).then((board) => (setCreating(false), onSelect(board.board_id)))} />
      ) : (
        <button type="button" onClick={() => setCreating(true)}>
          New board
        </button>
      )}
      <ul aria-label="Boards" className="board-list">
        {entries.map((entry) => (
          <li key={entry.id} className={entry.id === current ? "current" : undefined}>
            {renaming === entry.id && entry.board ? (
              <NameForm label="Board name" initial={entry.name} submitLabel="Save" onCancel={() => setRenaming(null)} onSubmit={(name) => void actions.renameBoard(entry.id, name).then(() => setRenaming(null))} />
            ) : (
              <>
                <button type="button" className="board" aria-label={entry.name} title={`${entry.name}: ${entry.count} images`} aria-pressed={entry.id === current} onClick={() => onSelect(entry.id)}>
                  {entry.cover ? <AuthImage src={`/api/v1/images/i/${encodeURIComponent(entry.cover)}/thumbnail`} alt="" className="cover" /> : <span className="cover" aria-hidden="true" />}
                  <span className="grow">{entry.name}</span>
                  <span className="count">
                    {entry.count}
                  </span>
                </button>
                {entry.board && (
                  <span className="board-actions">
                    <button type="button" aria-label={`Rename ${entry.name}`} title={`Rename ${entry.name}`} onClick={() => setRenaming(entry.id)}>
                      Rename
                    </button>
                    <button type="button" aria-label={`Delete ${entry.name}`} title={`Delete ${entry.name}`} onClick={() => setDeleting(entry.board)}>
                      Delete
                    </button>
                  </span>
                )}
              </>
            )}
          </li>
        ))}
      </ul>
      {actions.error && <p role="alert" className="error">{actions.error.message}</p>}
      {deleting && (
        <DeleteBoard
          board={deleting}
          onDone={() => {
            if (deleting.board_id === current) onSelect(UNCATEGORIZED);
            setDeleting(null);
          }}
        />
      )}
    </aside>
  );
}

/** Calls `load` while `enabled` and the element is within 600 px of the screen. */
function useNearScreen(ref: RefObject<HTMLElement | null>, enabled: boolean, load: () => unknown): void {
  useEffect(() => {
    const element = ref.current;
    if (element === null || !enabled) return;
    const observer = new IntersectionObserver((entries) => entries.some((entry) => entry.isIntersecting) && void load(), { rootMargin: "600px" });
    observer.observe(element);
    return () => observer.disconnect();
  }, [ref, enabled, load]);
}

export function Gallery() {
  const [boardId, setBoardId] = useState(UNCATEGORIZED);
  const { data: boardData } = useBoards();
  const boards = boardData?.boards ?? [];
  const [starredFirst, setStarredFirst] = useState(true);
  const images = useBoardImages(boardId, starredFirst);
  const actions = useGalleryActions();
  const [selected, setSelected] = useState<ReadonlySet<string>>(new Set());
  const [open, setOpen] = useState<string | null>(null);
  const [target, setTarget] = useState(UNCATEGORIZED);
  const [dragging, setDragging] = useState(false);
  const sentinel = useRef<HTMLDivElement>(null);
  const topSentinel = useRef<HTMLDivElement>(null);
  const loaded = images.data?.pages.flatMap((page) => page.items) ?? [];
  const total = images.data?.pages[0]?.total ?? 0;
  const { hasNextPage, isFetchingNextPage, fetchNextPage } = images;

  const { hasPreviousPage, isFetchingPreviousPage, fetchPreviousPage } = images;
  // A page loads when either end of the grid comes near the screen.
  useNearScreen(sentinel, hasNextPage && !isFetchingNextPage, fetchNextPage);
  useNearScreen(topSentinel, hasPreviousPage && !isFetchingPreviousPage, fetchPreviousPage);

  useEffect(() => setSelected(new Set()), [boardId]);

  const upload = (files: FileList | null) => {
    const list = [...(files ?? [])].filter((file) => file.type.startsWith("image/"));
    if (list.length > 0) void actions.upload(list, boardId);
  };
  const drop = (event: DragEvent) => {
    event.preventDefault();
    setDragging(false);
    upload(event.dataTransfer.files);
  };
  const toggle = (name: string, on: boolean) => {
    const next = new Set(selected);
    if (on) next.add(name);
    else next.delete(name);
    setSelected(next);
  };
  const openImage = loaded.find((image) => image.image_name === open) ?? null;
  const boardName = boardId === UNCATEGORIZED ? "Uncategorized" : (boards.find((board) => board.board_id === boardId)?.board_name ?? "");

  return (
    <div className="gallery">
      <Boards current={boardId} onSelect={setBoardId} />
      <section
        className={`stack drop-zone${dragging ? " dragging" : ""}`}
        onDragOver={(event) => {
          event.preventDefault();
          setDragging(true);
        }}
        onDragLeave={() => setDragging(false)}
        onDrop={drop}
        aria-labelledby="board-title"
      >
        <div className="row wrap">
          <h1 id="board-title" className="grow">
            {boardName} <span className="muted">({total})</span>
          </h1>
          <input
            id="upload-images"
            type="file"
            accept="image/png,image/jpeg,image/webp"
            multiple
            className="visually-hidden"
            onChange={(event) => (upload(event.target.files), (event.target.value = ""))}
          />
          <label htmlFor="upload-images" className="button">
            Upload images
          </label>
        </div>
        <div className="row wrap">
          <p className="hint grow">Drop images here to upload them to this board.</p>
          <label className="check">
            <input type="checkbox" checked={starredFirst} onChange={(event) => setStarredFirst(event.target.checked)} />
            Starred first
          </label>
        </div>
        <div className="toolbar" aria-label="Selection">
          <span>{selected.size} selected</span>
          <Field label="Move to">
            <select value={target} onChange={(event) => setTarget(event.target.value)}>
              <BoardOptions boards={boards} />
            </select>
          </Field>
          <button type="button" disabled={selected.size === 0} onClick={() => void actions.move([...selected], target).then(() => setSelected(new Set()))}>
            Move selected
          </button>
          <button
            type="button"
            disabled={selected.size === 0}
            onClick={() => window.confirm(`Delete ${selected.size} image(s)?`) && void actions.remove([...selected]).then(() => setSelected(new Set()))}
          >
            Delete selected
          </button>
        </div>
        {actions.error && <p role="alert" className="error">{actions.error.message}</p>}
        {images.isError && <p role="alert" className="error">{images.error.message}</p>}
        <div ref={topSentinel} aria-hidden="true" />
        {isFetchingPreviousPage && <p className="muted">Loading…</p>}
        <ul aria-label="Images" className="image-grid">
          {loaded.map((image) => (
            <li key={image.image_name} className={selected.has(image.image_name) ? "selected" : undefined}>
              <a
                className="thumb"
                href={image.image_url}
                onClick={(event) => {
                  event.preventDefault();
                  setOpen(image.image_name);
                }}
              >
                <AuthImage src={image.thumbnail_url} alt={image.image_name} loading="lazy" width={256} height={256} />
              </a>
              {image.starred && <span className="star" aria-label="Starred">★</span>}
              <input type="checkbox" className="select" aria-label={`Select ${image.image_name}`} checked={selected.has(image.image_name)} onChange={(event) => toggle(image.image_name, event.target.checked)} />
            </li>
          ))}
        </ul>
        {!images.isLoading && loaded.length === 0 && <p className="muted">No images on this board.</p>}
        <div ref={sentinel} aria-hidden="true" />
        {isFetchingNextPage && <p className="muted">Loading more…</p>}
      </section>
      {openImage && <ImageDialog image={openImage} boards={boards} onClose={() => setOpen(null)} />}
    </div>
  );
}
