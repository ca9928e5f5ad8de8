/**
 * Follow Up…: continue a succeeded, applied or partially applied run from its result (`co/followUp`). The new run
 * is tracked like a launch (progress notification, status bar, the Runs view, which shows it
 * under the run it follows up).
 */

import * as vscode from "vscode";

import { CoApi, LaunchResult, describeError, shortRunId } from "./core";

export interface FollowUpDeps {
  getApi(): Promise<CoApi>;
  /** A run id from a command argument (a Runs view row), else the user's pick. */
  runIdFrom(arg: unknown, placeHolder: string): Promise<string | undefined>;
  /** Track the new run: progress notification, status bar. */
  onLaunched(result: LaunchResult, prompt: string, workDoneToken: string): void;
}

export async function followUp(deps: FollowUpDeps, arg?: unknown): Promise<void> {
  const runId = await deps.runIdFrom(arg, "Follow up which run?");
  if (!runId) return;
  const prompt = await vscode.window.showInputBox({
    title: `CO: Follow Up run ${shortRunId(runId)}`,
    prompt: "What next? The follow-up starts from this run's result.",
    placeHolder: "e.g. now also update the tests",
    ignoreFocusOut: true,
    validateInput: (v) => (v.trim() ? undefined : "Describe the follow-up"),
  });
  if (!prompt) return;
  const token = `co-sidecar-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
  try {
    const result = await (await deps.getApi()).followUp({ runId, prompt, workDoneToken: token });
    deps.onLaunched(result, prompt, token);
  } catch (err) {
    void vscode.window.showErrorMessage(`co-sidecar: follow-up failed: ${describeError(err)}`);
  }
}

export function registerFollowUp(context: vscode.ExtensionContext, deps: FollowUpDeps): void {
  context.subscriptions.push(vscode.commands.registerCommand("co-sidecar.followUp", (arg?: unknown) => followUp(deps, arg)));
}
