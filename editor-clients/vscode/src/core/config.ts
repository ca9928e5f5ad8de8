/**
 * Settings helpers (no `vscode` import).
 */

/**
 * The server's argv from the `co-sidecar.serverCommand` setting: an array of
 * strings (a single string is split on whitespace); `${workspaceFolder}` and a
 * leading `~` are expanded. Unset or unusable: undefined, and the extension
 * starts the server it carries (./python.ts).
 */
export function resolveServerCommand(
  setting: unknown,
  vars: { workspaceFolder?: string; home?: string } = {},
): string[] | undefined {
  let argv: string[] | undefined;
  if (Array.isArray(setting) && setting.length > 0 && setting.every((a) => typeof a === "string")) {
    argv = [...(setting as string[])];
  } else if (typeof setting === "string" && setting.trim()) {
    argv = setting.trim().split(/\s+/);
  }
  if (!argv || !argv[0]) return undefined;
  return argv.map((arg) => {
    let out = arg;
    if (vars.workspaceFolder !== undefined) out = out.split("${workspaceFolder}").join(vars.workspaceFolder);
    if (vars.home !== undefined && (out === "~" || out.startsWith("~/"))) out = vars.home + out.slice(1);
    return out;
  });
}

/** What the server reads from initializationOptions and didChangeConfiguration: settings under "co-sidecar". */
export function serverSettingsPayload(settings: unknown): { "co-sidecar": Record<string, unknown> } {
  const value = settings && typeof settings === "object" && !Array.isArray(settings) ? settings : {};
  return { "co-sidecar": { ...(value as Record<string, unknown>) } };
}
