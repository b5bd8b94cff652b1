import react from "@vitejs/plugin-react";
import type { ProxyOptions } from "vite";
import { defineConfig } from "vitest/config";

// The API server answers its own host only (Host is rewritten) and refuses pages of other origins: run it with the
// dev server's origin allowed, NODELOOM_ALLOW_ORIGINS='["http://127.0.0.1:5173"]'.
const api: ProxyOptions = { target: "http://127.0.0.1:9090", changeOrigin: true, ws: true, rewriteWsOrigin: true };

// The build goes into the Python package, which serves it; `npm run dev` proxies the API to a running server.
export default defineConfig({
  plugins: [react()],
  build: {
    outDir: "../src/nodeloom/web/dist",
    emptyOutDir: true,
    chunkSizeWarningLimit: 1000,
  },
  server: {
    proxy: { "/api": api, "/ws": api },
  },
  test: {
    include: ["src/**/*.test.ts"],
  },
});
