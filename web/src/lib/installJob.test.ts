import { describe, expect, it } from "vitest";
import { applyInstallEvent, asInstallJob, formatBytes, isDone } from "./installJob";

describe("asInstallJob", () => {
  it("takes a job as it is", () => {
    const job = asInstallJob({ id: 3, status: "waiting", source: "/models/a" }, "/models/a");
    expect(job).toEqual({ id: 3, status: "waiting", source: "/models/a" });
    expect(isDone(job)).toBe(false);
  });
  it("reads an installed model's config as a completed job", () => {
    const config = { key: "k", name: "tiny", base: "sd-1", type: "main" };
    const job = asInstallJob(config, "/models/tiny");
    expect(job).toEqual({ id: null, status: "completed", source: "/models/tiny", config_out: config });
    expect(isDone(job)).toBe(true);
  });
});

describe("applyInstallEvent", () => {
  const waiting = asInstallJob({ id: 3, status: "running", source: "/m" }, "/m");
  it("completes, fails or cancels the job the event names", () => {
    expect(applyInstallEvent(waiting, "model_install_complete", { id: 3, config_out: { name: "m" } })).toMatchObject({ status: "completed", config_out: { name: "m" } });
    expect(applyInstallEvent(waiting, "model_install_error", { id: 3, error: "no model here", error_type: "InvalidModelError" })).toMatchObject({
      status: "error",
      error: "no model here",
      error_reason: "InvalidModelError",
    });
    expect(applyInstallEvent(waiting, "model_install_cancelled", { id: 3 }).status).toBe("cancelled");
  });
  it("ignores events about other jobs", () => {
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
