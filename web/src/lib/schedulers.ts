import type { Scheduler } from "../api/types";

// Every scheduler the denoise node takes. The check below fails the type check when the server's list (in the
// generated schema) has one this list lacks.
export const SCHEDULERS = [
  "ddim", "ddpm", "deis", "deis_k", "lms", "lms_k", "pndm", "heun", "heun_k", "euler", "euler_k", "euler_a",
  "kdpm_2", "kdpm_2_k", "kdpm_2_a", "kdpm_2_a_k", "dpmpp_2s", "dpmpp_2s_k", "dpmpp_2m", "dpmpp_2m_k",
  "dpmpp_2m_sde", "dpmpp_2m_sde_k", "dpmpp_3m", "dpmpp_3m_k", "unipc", "unipc_k", "lcm", "tcd",
] as const satisfies readonly Scheduler[];

type Missing = Exclude<Scheduler, (typeof SCHEDULERS)[number]>;
export const NO_SCHEDULER_MISSING: [Missing] extends [never] ? true : Missing = true;
