// Short names for the generated API types (schema.d.ts, from the server's OpenAPI schema: `make web-types`).
import type { components } from "./schema";

type Schemas = components["schemas"];
export type Batch = Schemas["Batch"];
export type BatchDatum = Schemas["BatchDatum"];
export type EnqueueBatchResult = Schemas["EnqueueBatchResult"];
export type BoardDTO = Schemas["BoardDTO"];
export type ImageDTO = Schemas["ImageDTO"];
export type ModelIdentifier = Schemas["ModelIdentifierField"];
export type BaseModelType = Schemas["BaseModelType"];
export type ModelType = Schemas["ModelType"];
export type SessionQueueItem = Schemas["SessionQueueItem"];
export type QueueStatus = Schemas["SessionQueueStatus"];
export type QueueAndProcessorStatus = Schemas["SessionQueueAndProcessorStatus"];
export type ProcessorListing = Schemas["ProcessorStatus"];
export type BatchStatus = Schemas["BatchStatus"];
export type QueueItemStatus = SessionQueueItem["status"] & string;
export type Scheduler = Schemas["DenoiseLatentsInvocation"]["scheduler"] & string;
export type CoreMetadata = Schemas["CoreMetadataInvocation"];
export type CacheStats = Schemas["CacheStats"];
export type AnyModelConfig = Schemas["ModelsList"]["models"][number];
export type ModelInstallJob = Schemas["ModelInstallJob"];
export type GraphJSON = Schemas["Graph"];
