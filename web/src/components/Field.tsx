import { cloneElement, type ReactElement, useId } from "react";

/** A control with its label beside it, not around it: a label around a control would add the control's value to
 * its accessible name ("Model tiny-sd"), and the name must be the label alone. */
export function Field({ label, children, className }: { label: string; children: ReactElement<{ id?: string }>; className?: string }) {
  const id = useId();
  return (
    <div className={className ? `field ${className}` : "field"}>
      <label htmlFor={id}>{label}</label>
      {cloneElement(children, { id })}
    </div>
  );
}
