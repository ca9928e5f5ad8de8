/**
 * Typed request helpers for the `co/*` methods.
 *
 * Works over anything with `sendRequest(method, params)`: the extension passes its
 * `LanguageClient`, node tests pass a `vscode-jsonrpc` MessageConnection.
 */

import {
  ApplyParams,
  ApplyResult,
  DiffParams,
  DiffResult,
  DoctorResult,
  ErrorCodes,
  FollowUpParams,
  LaunchParams,
  LaunchResult,
  ListParams,
  ListResult,
  Methods,
  RouteResult,
  RunRecord,
  RunStateResult,
} from "./protocol";

export interface RequestSender {
  sendRequest<R>(method: string, params: unknown): Promise<R>;
}

export class CoApi {
  constructor(private readonly sender: RequestSender) {}

  private send<R>(method: string, params: object): Promise<R> {
    return this.sender.sendRequest<R>(method, params);
  }

  route(params: LaunchParams): Promise<RouteResult> {
    return this.send(Methods.route, params);
  }

  launch(params: LaunchParams): Promise<LaunchResult> {
    return this.send(Methods.launch, params);
  }

  /** A follow-up's step (what it changed) or its cumulative change (what apply applies). */
  followUpDiff(runId: string, view: NonNullable<DiffParams["view"]>): Promise<DiffResult> {
    return this.send(Methods.diff, { runId, view });
  }

  /** A new run that starts from `runId`'s result (co/followUp). */
  followUp(params: FollowUpParams): Promise<LaunchResult> {
    return this.send(Methods.followUp, params);
  }

  status(runId: string): Promise<RunRecord> {
    return this.send(Methods.status, { runId });
  }

  list(params: ListParams = {}): Promise<ListResult> {
    return this.send(Methods.list, params);
  }

  cancel(runId: string): Promise<RunStateResult> {
    return this.send(Methods.cancel, { runId });
  }

  /** The run's diff; with a selection (`files`, `hunks`), only those parts not applied yet. */
  diff(runId: string, attempt?: number, selection: Pick<DiffParams, "files" | "hunks"> = {}): Promise<DiffResult> {
    return this.send(Methods.diff, { runId, ...(attempt === undefined ? {} : { attempt }), ...selection });
  }

  /** Explicit acceptance: only call this after the user confirmed (see `confirmAndApply`). */
  apply(params: Omit<ApplyParams, "accept">): Promise<ApplyResult> {
    return this.send(Methods.apply, { ...params, accept: true });
  }

  /** What co/apply would do, per file; writes and records nothing (no acceptance needed). */
  planApply(params: Omit<ApplyParams, "accept" | "dryRun">): Promise<ApplyResult> {
    return this.send(Methods.apply, { ...params, dryRun: true });
  }

  reject(runId: string): Promise<RunStateResult> {
    return this.send(Methods.reject, { runId });
  }

  doctor(): Promise<DoctorResult> {
    return this.send(Methods.doctor, {});
  }
}

export interface RpcErrorLike {
  code: number;
  message: string;
  data?: unknown;
}

export function isRpcError(err: unknown): err is RpcErrorLike {
  return (
    typeof err === "object" &&
    err !== null &&
    typeof (err as RpcErrorLike).code === "number" &&
    typeof (err as RpcErrorLike).message === "string"
  );
}

/** The server's string error category (error.data.category), if any. */
export function errorCategory(err: unknown): string | undefined {
  if (!isRpcError(err)) return undefined;
  const data = err.data as { category?: unknown } | undefined;
  return typeof data?.category === "string" ? data.category : undefined;
}

const CODE_NAMES: Record<number, string> = {
  [ErrorCodes.invalidParams]: "invalid parameters",
  [ErrorCodes.runNotFound]: "unknown run",
  [ErrorCodes.invalidState]: "not possible in this state",
  [ErrorCodes.applyRefused]: "apply refused",
  [ErrorCodes.preflightFailed]: "preflight failed",
  [ErrorCodes.patchRefused]: "patch refused",
  [ErrorCodes.workspaceError]: "workspace error",
  [ErrorCodes.cloudError]: "cloud error",
};

/** One line for a person: "apply refused: the run was already applied". */
export function describeError(err: unknown): string {
  if (isRpcError(err)) {
    const name = CODE_NAMES[err.code];
    return name && !err.message.toLowerCase().startsWith(name) ? `${name}: ${err.message}` : err.message;
  }
  if (err instanceof Error) return err.message;
  return String(err);
}
