// The gallery's server state: boards, a board's images in pages, and the changes the Gallery page makes.
import { useInfiniteQuery, useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { api, request } from "./client";
import { useRefetchOn } from "./hooks";
import type { BoardDTO, ImageDTO } from "./types";

/** The board id that stands for the images on no board. */
export const UNCATEGORIZED = "none";
export const PAGE_SIZE = 60;
const MAX_PAGES = 6;
const BOARDS_KEY = ["boards"];
const IMAGES_KEY = ["images"];

interface Page {
  items: ImageDTO[];
  offset: number;
  limit: number;
  total: number;
}

const imagesQuery = (boardId: string, offset: number, limit: number, starredFirst = true) =>
  `/api/v1/images/?board_id=${encodeURIComponent(boardId)}&is_intermediate=false&starred_first=${starredFirst}&offset=${offset}&limit=${limit}`;

interface Boards {
  boards: BoardDTO[];
  uncategorizedCount: number;
}

export function useBoards() {
  useRefetchOn(["image_created"], BOARDS_KEY, 1000);
  return useQuery({
    queryKey: BOARDS_KEY,
    queryFn: async (): Promise<Boards> => {
      const [boards, uncategorized] = await Promise.all([
        api<BoardDTO[]>("/api/v1/boards/?all=true"),
        api<Page>(imagesQuery(UNCATEGORIZED, 0, 1)),
      ]);
      return { boards, uncategorizedCount: uncategorized.total };
    },
  });
}

/** The board's images, newest first (starred first, if asked), a page at a time as the grid scrolls either way. */
export function useBoardImages(boardId: string, starredFirst: boolean) {
  useRefetchOn(["image_created"], [...IMAGES_KEY, boardId], 1000);
  return useInfiniteQuery({
    queryKey: [...IMAGES_KEY, boardId, starredFirst],
    initialPageParam: 0,
    queryFn: ({ pageParam }) => api<Page>(imagesQuery(boardId, pageParam, PAGE_SIZE, starredFirst)),
    getNextPageParam: (last) => (last.offset + last.items.length < last.total ? last.offset + last.items.length : undefined),
    getPreviousPageParam: (first) => (first.offset > 0 ? Math.max(0, first.offset - PAGE_SIZE) : undefined),
    // At most this many pages are held: scrolling on drops those at the other end, so a board of any size holds
    // the memory of a few hundred thumbnails. The browser's scroll anchoring keeps the view still meanwhile.
    maxPages: MAX_PAGES,
  });
}

/** The calls that change images and boards; each refetches the boards and the images after it. */
export function useGalleryActions() {
  const client = useQueryClient();
  const mutation = useMutation({
    mutationFn: (call: () => Promise<unknown>) => call(),
    onSettled: () => {
      void client.invalidateQueries({ queryKey: BOARDS_KEY });
      void client.invalidateQueries({ queryKey: IMAGES_KEY });
    },
  });
  const run = (call: () => Promise<unknown>) => mutation.mutateAsync(call);
  return {
    error: mutation.error,
    pending: mutation.isPending,
    createBoard: (name: string) =>
      run(async () => {
        const board = await api<BoardDTO>(`/api/v1/boards/?board_name=${encodeURIComponent(name)}`, "POST");
        // Shown at once (first: the server lists the newest first), whatever a read of the boards begun before it
        // brings back; the refetch after confirms it.
        await client.cancelQueries({ queryKey: BOARDS_KEY });
        client.setQueryData<Boards>(BOARDS_KEY, (data) => data && { ...data, boards: [board, ...data.boards.filter((shown) => shown.board_id !== board.board_id)] });
        return board;
      }) as Promise<BoardDTO>,
    renameBoard: (boardId: string, name: string) => run(() => api(`/api/v1/boards/${boardId}`, "PATCH", { board_name: name })),
    deleteBoard: (boardId: string, includeImages: boolean) => run(() => api(`/api/v1/boards/${boardId}?include_images=${includeImages}`, "DELETE")),
    move: (imageNames: string[], boardId: string) =>
      run(() =>
        boardId === UNCATEGORIZED
          ? api("/api/v1/board_images/batch/delete", "POST", { image_names: imageNames })
          : api("/api/v1/board_images/batch", "POST", { board_id: boardId, image_names: imageNames }),
      ),
    remove: (imageNames: string[]) => run(() => api("/api/v1/images/delete", "POST", { image_names: imageNames })),
    star: (imageNames: string[], starred: boolean) => run(() => api(`/api/v1/images/${starred ? "star" : "unstar"}`, "POST", { image_names: imageNames })),
    upload: (files: File[], boardId: string) =>
      run(() =>
        Promise.all(
          files.map((file) => {
            const body = new FormData();
            body.append("file", file);
            const board = boardId === UNCATEGORIZED ? "" : `&board_id=${encodeURIComponent(boardId)}`;
            return request(`/api/v1/images/upload?image_category=user${board}`, { method: "POST", body });
          }),
        ),
      ),
  };
}
