import { describe, expect, it } from "vitest";
import { applyInstallEvent, describeJob, formatBytes, type InstallJob, isDone, sourceText } from "./installJob";

const job = (changes: Partial<InstallJob> = {}): InstallJob => ({
  id: 3,
  status: "waiting",
  source: { type: "hf", repo_id: "owner/tiny", variant: "fp16", subfolder: null },
  local_path: "/root/models/tmp/tiny",
  inplace: false,
  bytes: 0,
  total_bytes: 0,
  download_parts: [],
  ...changes,
});

describe("sourceText", () => {
  it("writes each kind of source as it is typed", () => {
    expect(sourceText({ type: "local", path: "/models/a.safetensors", inplace: true })).toBe("/models/a.safetensors");
    expect(sourceText({ type: "url", url: "https://example.com/a.safetensors" })).toBe("https://example.com/a.safetensors");
    expect(sourceText({ type: "hf", repo_id: "owner/name" })).toBe("owner/name");
    expect(sourceText({ type: "hf", repo_id: "owner/name", variant: "fp16" })).toBe("owner/name:fp16");
    expect(sourceText({ type: "hf", repo_id: "owner/name", subfolder: "vae" })).toBe("owner/name::vae");
    expect(sourceText({ type: "hf", repo_id: "owner/name", variant: "fp32", subfolder: "vae" })).toBe("owner/name:fp32:vae");
  });
});

describe("applyInstallEvent", () => {
  it("follows the job through its downloads to its end", () => {
    let now = applyInstallEvent(job(), "model_install_download_started", { id: 3, bytes: 0, total_bytes: 2048 });
    expect(now).toMatchObject({ status: "downloading", bytes: 0, total_bytes: 2048 });
    now = applyInstallEvent(now, "model_install_download_progress", { id: 3, bytes: 1024, total_bytes: 2048 });
    expect(now).toMatchObject({ status: "downloading", bytes: 1024, total_bytes: 2048 });
    expect(describeJob(now)).toBe("Downloading owner/tiny:fp16: 1.0 KB of 2.0 KB");
    now = applyInstallEvent(now, "model_install_downloads_complete", { id: 3 });
    expect(now.status).toBe("downloads_done");
    now = applyInstallEvent(now, "model_install_started", { id: 3 });
    expect(now.status).toBe("running");
    expect(isDone(now)).toBe(false);
    now = applyInstallEvent(now, "model_install_complete", { id: 3, config: { name: "tiny", base: "sd-1", type: "main", format: "diffusers" } });
    expect(now.status).toBe("completed");
    expect(isDone(now)).toBe(true);
    expect(describeJob(now)).toBe("Installed tiny: base sd-1, type main, format diffusers");
  });
  it("fails or cancels the job the event names", () => {
    const failed = applyInstallEvent(job({ status: "running" }), "model_install_error", { id: 3, error: "no model here", error_type: "InvalidModelError" });
    expect(failed).toMatchObject({ status: "error", error: "no model here", error_reason: "InvalidModelError" });
    expect(describeJob(failed)).toBe("Install of owner/tiny:fp16 failed: no model here");
    expect(applyInstallEvent(job({ status: "downloading" }), "model_install_cancelled", { id: 3 }).status).toBe("cancelled");
  });
  it("ignores events about other jobs", () => {
    const waiting = job();
    expect(applyInstallEvent(waiting, "model_install_complete", { id: 4 })).toBe(waiting);
  });
});

describe("formatBytes", () => {
  it("picks the unit", () => {
    expect(formatBytes(512)).toBe("512 B");
    expect(formatBytes(1536)).toBe("1.5 KB");
    expect(formatBytes(2 * 1024 ** 3)).toBe("2.0 GB");
  });
});
