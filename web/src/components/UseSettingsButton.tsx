import { useState } from "react";
import { api } from "../api/client";
import { useModels } from "../api/models";
import { settingsFromMetadata } from "../lib/batch";
import { updateSettings } from "../lib/settingsStore";
import { navigate } from "../router";

/** Restores the Generate page's settings from what the image recorded, then shows that page. */
export function UseSettingsButton({ imageName }: { imageName: string }) {
  const { data: models } = useModels();
  const [problem, setProblem] = useState<string | null>(null);
  const restore = async () => {
    setProblem(null);
    try {
      const metadata = await api<Record<string, unknown> | null>(`/api/v1/images/i/${encodeURIComponent(imageName)}/metadata`);
      if (metadata === null) {
        setProblem("This image holds no settings");
        return;
      }
      const restored = settingsFromMetadata(metadata);
      const installed = new Set((models ?? []).map((model) => model.key));
      // A model that is no longer installed is left as chosen; the rest is restored.
      if (restored.model && !installed.has(restored.model.key)) delete restored.model;
      if (restored.vae && !installed.has(restored.vae.key)) delete restored.vae;
      if (restored.loras) restored.loras = restored.loras.filter((lora) => installed.has(lora.model.key));
      updateSettings(restored);
      navigate("/");
    } catch (error) {
      setProblem(error instanceof Error ? error.message : String(error));
    }
  };
  return (
    <>
      <button type="button" onClick={() => void restore()}>
        Use these settings
      </button>
      {problem && <span role="alert" className="error">{problem}</span>}
    </>
  );
}
