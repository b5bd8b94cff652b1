import { UNCATEGORIZED } from "../api/gallery";
import type { BoardDTO } from "../api/types";

/** The options of a board picker: "Uncategorized" first, then every board by name, each valued by its id. */
export function BoardOptions({ boards }: { boards: BoardDTO[] }) {
  return (
    <>
      <option value={UNCATEGORIZED}>Uncategorized</option>
      {boards.map((board) => (
        <option key={board.board_id} value={board.board_id}>
          {board.board_name}
        </option>
      ))}
    </>
  );
}
