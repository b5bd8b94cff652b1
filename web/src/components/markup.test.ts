import { createElement } from "react";
import { renderToStaticMarkup } from "react-dom/server";
import { describe, expect, it } from "vitest";
import type { BoardDTO } from "../api/types";
import { BoardOptions } from "./BoardOptions";
import { Table } from "./Table";

const board = (board_id: string, board_name: string) => ({ board_id, board_name }) as BoardDTO;

describe("BoardOptions", () => {
  it("offers Uncategorized first, then each board by name, valued by its id", () => {
    const html = renderToStaticMarkup(createElement("select", null, createElement(BoardOptions, { boards: [board("b1", "Holiday"), board("b2", "Work")] })));
    expect(html).toBe('<select><option value="none">Uncategorized</option><option value="b1">Holiday</option><option value="b2">Work</option></select>');
  });
});

describe("Table", () => {
  const row = createElement("tr", null, createElement("td", null, "a"), createElement("td", null, "b"));

  it("names the table and heads each column", () => {
    const html = renderToStaticMarkup(createElement(Table, { label: "Things", columns: ["One", "Two"], className: "wide", children: row }));
    expect(html).toBe(
      '<div class="table-wrap"><table aria-label="Things" class="wide"><thead><tr><th scope="col">One</th><th scope="col">Two</th></tr></thead>' +
        "<tbody><tr><td>a</td><td>b</td></tr></tbody></table></div>",
    );
  });

  it("says what an empty table holds in one row across every column, and nothing where empty is false", () => {
    const empty = renderToStaticMarkup(createElement(Table, { label: "Things", columns: ["One", "Two"], empty: "Nothing yet.", children: [] }));
    expect(empty).toContain('<tbody><tr><td colSpan="2" class="muted">Nothing yet.</td></tr></tbody>');
    const none = renderToStaticMarkup(createElement(Table, { label: "Things", columns: ["One", "Two"], empty: false, children: [] }));
    expect(none).toContain("<tbody></tbody>");
  });
});
