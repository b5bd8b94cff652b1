import react from "@vitejs/plugin-react";
import { defineConfig } from "vitest/config";

// The build goes into the Python package, which serves it; `npm run dev` proxies the API to a running server.
export default defineConfig({
  plugins: [react()],
  build: {
    outDir: "../src/nodeloom/web/dist",
    emptyOutDir: true,
    chunkSizeWarningLimit: 1000,
  },
  server: {
    proxy: {
      "/api": "http://127.0.0.1:9090",
      "/ws": { target: "http://127.0.0.1:9090", ws: true },
    },
  },
  test: {
    include: ["src/**/*.test.ts"],
  },
});
