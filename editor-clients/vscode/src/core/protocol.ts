/**
 * The co-sidecar wire contract (custom `co/*` LSP methods).
 *
 * The types, states, method names and error codes are generated from the server's protocol
 * registry into protocol.generated.ts (`python -m co_sidecar.docgen`; a test fails when it is
 * stale). This file adds what only the client needs. No `vscode` import here: node tests use
 * this module against the real server.
 */

import { ACTIVE_STATES, FINISHED_STATES, FOLLOWABLE_STATES, RunManifest, RunState } from "./protocol.generated";

export * from "./protocol.generated";
export * from "./lsp";

export type Mode = "local" | "cloud";
export type RequestedMode = "auto" | Mode;

/** The order a run moves through; used to check that updates never go backwards. */
export const STATE_ORDER: Readonly<Record<RunState, number>> = {
  queued: 0,
  routing: 1,
  launching: 2,
  running: 3,
  succeeded: 4,
  failed: 4,
  cancelled: 4,
  timed_out: 4,
  applied: 5,
  partially_applied: 5,
  rejected: 5,
};

export function isActive(state: RunState): boolean {
  return ACTIVE_STATES.has(state);
}

export function isFinished(state: RunState): boolean {
  return FINISHED_STATES.has(state);
}

export function isFollowable(state: RunState): boolean {
  return FOLLOWABLE_STATES.has(state);
}

/** The run record `co/status` returns: the manifest (docs/manifest.schema.json). */
export type RunRecord = RunManifest;
