import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { App } from "./App";
import { connect, onResync } from "./api/events";
import { startQueueStore } from "./api/queueStore";
import "./styles.css";

// Server state comes from queries that events and resyncs invalidate, not from polling.
const queryClient = new QueryClient({
  defaultOptions: { queries: { staleTime: Infinity, refetchOnWindowFocus: false, retry: 1 } },
});
onResync(() => void queryClient.invalidateQueries());
startQueueStore();
connect();

createRoot(document.getElementById("root")!).render(
  <StrictMode>
    <QueryClientProvider client={queryClient}>
      <App />
    </QueryClientProvider>
  </StrictMode>,
);
