import type { ReactNode } from "react";

/** A table named `label`, with one header cell per column, that scrolls sideways inside its own box on a narrow
 * screen. `empty`, where given, is one muted row across every column: what the table says while it has no rows. */
export function Table({ label, columns, className, empty, children }: { label: string; columns: string[]; className?: string; empty?: string | false; children: ReactNode }) {
  return (
    <div className="table-wrap">
      <table aria-label={label} className={className}>
        <thead>
          <tr>
            {columns.map((column) => (
              <th key={column} scope="col">
                {column}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {empty && (
            <tr>
              <td colSpan={columns.length} className="muted">
                {empty}
              </td>
            </tr>
          )}
          {children}
        </tbody>
      </table>
    </div>
  );
}
