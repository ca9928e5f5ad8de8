// End-to-end suite: the packaged extension in a real VS Code (code-server) with the server it
// carries, for a user who never installed co-sidecar (no co-sidecar on PATH, no project venv,
// only a python3 on PATH), driven through the UI only (command palette, quick picks, dialogs) by headless
// Chromium with playwright-core, in a temporary git repository whose co-sidecar.toml
// points local.agentCommand at a small agent script. Steps:
//   1. CO: Run Task + prompt: progress (notification, status bar), the run reaches succeeded
//   2. CO: Preview Diff opens VS Code's diff editor for the changed file
//   3. CO: Apply, answered Cancel: editor and disk unchanged, the manifest has no apply
//   4. CO: Apply, answered Apply (+ the refactor preview): the editor shows the new text,
//      File: Save All writes it to disk, the manifest records the apply
//   5. a second task, CO: Cancel while it runs: cancelled, and the agent process is gone
//   6. the co-sidecar Runs view: the earlier runs with their states; a third task appears,
//      its elapsed time moves while the agent is silent, it finishes with its state and diff
//      stats; Apply from the row's context menu (disk and manifest); after a window reload
//      the view is rebuilt from co/list; Open Manifest from the context menu opens manifest.json
//   7. a task that changes four files; CO: Apply shows the file pick (all ticked, +/- counts):
//      four.txt unticked; in the refactor preview one.txt and two.txt ticked, three.txt not:
//      two files applied (disk after Save All), the others unchanged, and the manifest says
//      partially_applied with what was applied and what is left (both choices recorded)
//   8. a fifth task, then Follow Up… from its row's context menu: the follow-up appears under
//      it in the view, and Apply on the follow-up applies both changes at once (disk, manifest)
//   9. a task that changes long.txt in two places; CO: Preview Diff, then CO: Choose Hunks… on
//      that diff editor: both hunks ticked, hunk 1 unticked: only hunk 2 applied (disk after Save
//      All), the manifest says partially_applied with long.txt's hunk 2 applied
//  10. step 7's three.txt edited on disk: CO: Apply's conflict modal names it and offers its four
//      ways out; Apply Clean Files Only applies four.txt, three.txt keeps the user's text (no markers)
// Usage: node e2e.mjs path/to/co-sidecar-linux-x64-<version>.vsix   (run.sh installs the deps,
// packages the extension and sets CO_E2E_DEPS). Screenshots of every step go to
// ../out/e2e/; with CO_E2E_UPDATE_DOCS=1 three of them are copied to docs/images/.
import assert from "node:assert/strict";
import { execFileSync, spawn, spawnSync } from "node:child_process";
import {
  copyFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { createRequire } from "node:module";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { delimiter, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const ext = resolve(here, "..");
const root = resolve(ext, "..", "..");
const deps = process.env.CO_E2E_DEPS ?? here;
const { chromium } = createRequire(join(deps, "package.json"))("playwright-core");
const codeServer = join(deps, "node_modules", ".bin", "code-server");
const version = JSON.parse(readFileSync(join(ext, "package.json"), "utf8")).version;
const vsix = resolve(process.argv[2] ?? join(ext, `co-sidecar-linux-x64-${version}.vsix`));
const artifacts = join(ext, "out", "e2e");

// The user's environment: PATH without any directory that has a co-sidecar or is a virtualenv's
// bin (the project's .venv), and none of the variables that point at one.
const isVenvBin = (dir) => existsSync(join(dir, "..", "pyvenv.cfg"));
const userPath = (process.env.PATH ?? "")
  .split(delimiter)
  .filter((dir) => dir && !existsSync(join(dir, "co-sidecar")) && !isVenvBin(dir))
  .join(delimiter);
const userEnv = { ...process.env, PATH: userPath };
for (const name of ["VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "CO_SIDECAR_CMD", "CO_PYTHON", "CO_CODEX_BIN_DIR"]) delete userEnv[name];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const started = Date.now();

rmSync(artifacts, { recursive: true, force: true });
mkdirSync(artifacts, { recursive: true });

// --- the workspace: a git repo whose co-sidecar.toml (also the activation event) names the agent
const base = mkdtempSync(join(tmpdir(), "co-vscode-e2e-"));
const ws = join(base, "ws");
const userData = join(base, "user-data");
const extDir = join(base, "extensions");
mkdirSync(ws);
mkdirSync(join(userData, "User"), { recursive: true });
mkdirSync(join(userData, "Machine"), { recursive: true });

const agent = join(base, "agent.py");
writeFileSync(
  agent,
  [
    "import os, pathlib, sys, time",
    "prompt = sys.argv[1]",
    'print(f"agent: pid {os.getpid()}: {prompt}", flush=True)',
    'if prompt.startswith("plan"):',
    '    pathlib.Path("plan.txt").write_text("step 1\\n")',
    '    print("agent: wrote plan.txt", flush=True)',
    "    sys.exit(0)",
    'if prompt.startswith("follow"):',
    '    p = pathlib.Path("plan.txt")  # there only if the follow-up starts from the first result',
    '    p.write_text(p.read_text() + prompt + "\\n")',
    '    print("agent: followed up", flush=True)',
    "    sys.exit(0)",
    'if "notes" in prompt:',
    '    time.sleep(5)  # silent: the elapsed time must move anyway',
    '    pathlib.Path("notes.txt").write_text("notes by the agent\\n")',
    '    print("agent: wrote notes.txt", flush=True)',
    "    sys.exit(0)",
    'if "three" in prompt:',
    '    for name in ("one.txt", "two.txt", "three.txt", "four.txt"):',
    '        pathlib.Path(name).write_text(f"{name} changed by the agent\\n")',
    '    print("agent: changed four files", flush=True)',
    "    sys.exit(0)",
    'if "two places" in prompt:',
    '    p = pathlib.Path("long.txt")',
    '    p.write_text(p.read_text().replace("top line", "TOP LINE") + "bottom by the agent\\n")',
    '    print("agent: changed long.txt twice", flush=True)',
    "    sys.exit(0)",
    'if "sleep" in prompt:',
    '    print("agent: sleeping until cancelled", flush=True)',
    "    time.sleep(600)",
    "for i in range(3):",
    '    print(f"agent: working {i + 1}/3", flush=True)',
    "    time.sleep(1)",
    'p = pathlib.Path("hello.txt")',
    'p.write_text(p.read_text().replace("world", "there") + "added by agent\\n")',
    'print("agent: done", flush=True)',
    "",
  ].join("\n"),
);
const HELLO = "hello world\nsecond line\n";
const HELLO_AFTER = "hello there\nsecond line\nadded by agent\n";
const FIRST_PROMPT = "greet there instead of world";
const SECOND_PROMPT = "sleep until cancelled";
const THIRD_PROMPT = "write the notes quietly";
const NOTES = "notes by the agent\n";
const FOURTH_PROMPT = "change three files and a fourth";
const FIFTH_PROMPT = "change long.txt in two places";
const LONG = "top line\n" + Array.from({ length: 12 }, (_, i) => `filler ${i + 1}\n`).join("");
writeFileSync(join(ws, "long.txt"), LONG);
for (const name of ["one.txt", "two.txt", "three.txt", "four.txt"]) writeFileSync(join(ws, name), `${name}\n`);
const PLAN_PROMPT = "plan the work";
const FOLLOW_PROMPT = "follow with a second step";
const PLAN_AFTER = "step 1\nfollow with a second step\n";
writeFileSync(join(ws, "hello.txt"), HELLO);
writeFileSync(join(ws, ".gitignore"), ".runs/\n");
writeFileSync(
  join(ws, "co-sidecar.toml"),
  `[local]\nagentCommand = ["python3", ${JSON.stringify(agent)}, "{prompt}"]\n`,
);
const git = (...args) =>
  execFileSync("git", ["-c", "user.name=e2e", "-c", "user.email=e2e@example.com", "-c", "commit.gpgsign=false", ...args], {
    cwd: ws,
    stdio: "pipe",
  });
git("init", "-q", "-b", "main");
git("add", "-A");
git("commit", "-qm", "init");

// No co-sidecar setting at all: the extension finds python3 on PATH and runs its bundled server.
writeFileSync(
  join(userData, "User", "settings.json"),
  JSON.stringify(
    {
      "security.workspace.trust.enabled": false, // else extensions stay off (Restricted Mode)
      "co-sidecar.defaultMode": "local",
      // So that the applied edit stays in the editor until File: Save All writes it (VS Code
      // in a browser auto-saves after a delay by default).
      "files.autoSave": "off",
      "files.refactoring.autoSave": false,
      "workbench.startupEditor": "none",
      "workbench.colorTheme": "Default Light Modern",
      "workbench.tips.enabled": false,
      "chat.disableAIFeatures": true,
      "editor.minimap.enabled": false,
      "diffEditor.renderSideBySide": true,
      "diffEditor.useInlineViewWhenSpaceIsLimited": false,
      "workbench.secondarySideBar.defaultVisibility": "hidden",
      "extensions.autoCheckUpdates": false,
      "extensions.autoUpdate": false,
      "update.mode": "none",
      "telemetry.telemetryLevel": "off",
      "git.autofetch": false,
    },
    null,
    2,
  ),
);

// --- the run records on disk (.runs/<taskId>/<runId>/manifest.json) ----------------------
function manifests() {
  const runs = join(ws, ".runs");
  const found = [];
  if (!existsSync(runs)) return found;
  for (const task of readdirSync(runs, { withFileTypes: true })) {
    if (!task.isDirectory()) continue;
    for (const run of readdirSync(join(runs, task.name), { withFileTypes: true })) {
      const path = join(runs, task.name, run.name, "manifest.json");
      if (run.isDirectory() && existsSync(path)) found.push(JSON.parse(readFileSync(path, "utf8")));
    }
  }
  return found;
}
const manifestFor = (prompt) => manifests().find((m) => m.prompt === prompt);
const alive = (pid) => {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if (err.code === "ESRCH") return false;
    throw err;
  }
  // A zombie still answers kill(0), but it is no longer running.
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return false;
  }
};

/** The argv of the running co-sidecar server started from the installed extension, if any. */
function bundledServerProcess() {
  for (const pid of readdirSync("/proc").filter((n) => /^\d+$/.test(n))) {
    let argv;
    try {
      argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter(Boolean);
    } catch {
      continue;
    }
    if (argv.some((a) => a.startsWith(extDir) && a.endsWith(join("bundled", "tool", "server.py")))) return argv;
  }
  return undefined;
}

const freePort = () =>
  new Promise((res, rej) => {
    const srv = createServer();
    srv.on("error", rej);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => res(port));
    });
  });

// --- the run --------------------------------------------------------------------------
let server;
let browser;
let page;
const serverLog = [];
const steps = [];
let passed = 0;
let failed = 0;
const watchdog = setTimeout(() => {
  console.log("not ok - the suite did not finish within 10 minutes");
  cleanup().finally(() => process.exit(1));
}, 10 * 60_000);

async function shot(name) {
  if (!page) return;
  await page.screenshot({ path: join(artifacts, `${name}.png`) }).catch(() => undefined);
}

/** Polls `fn` until it returns something truthy. */
async function until(what, fn, ms = 30_000) {
  const end = Date.now() + ms;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > end) throw new Error(`timed out after ${ms / 1000} s waiting for ${what}${last ? ` (${last.message})` : ""}`);
    await sleep(200);
  }
}

const texts = (sel) => page.locator(sel).evaluateAll((els) => els.map((e) => e.textContent.replace(/\s+/g, " ").trim()));
const notifications = () => texts(".notifications-toasts .notification-list-item-message, .notifications-center .notification-list-item-message");
const coStatus = async () => (await texts("footer .statusbar-item")).find((t) => /^CO\b/.test(t)) ?? "";
/** The lines of a Monaco editor as shown (view lines, in order; nbsp → space). */
const viewText = (editor) =>
  editor.locator(".view-lines").first().evaluate((el) =>
    [...el.querySelectorAll(".view-line")]
      .sort((a, b) => parseFloat(a.style.top) - parseFloat(b.style.top))
      .map((l) => l.textContent.replace(/\u00a0/g, " "))
      .join("\n"),
  );
/** The active tab's accessible name, e.g. "hello.txt". */
const activeTab = async () =>
  (await page.locator(".editor-group-container.active .tab.active").first().getAttribute("aria-label").catch(() => null)) ?? "";
const activeEditor = () => page.locator(".editor-group-container.active .editor-container .monaco-editor").first();

const quickInput = () => page.locator(".quick-input-widget");
const quickInputBox = () => page.locator(".quick-input-widget .quick-input-box input");

/** Waits for the quick input's list to focus the row labelled exactly `label` (arrowing down to it), then Enter. */
async function pickRow(label) {
  const rows = page.locator(".quick-input-widget .quick-input-list .monaco-list-row");
  await until(`a "${label}" row in the quick pick`, async () =>
    (await rows.locator(".label-name").allTextContents()).some((t) => t.trim() === label),
  10_000);
  for (let i = 0; i < 30; i++) {
    const focused = (await rows.locator(".label-name").evaluateAll((els) =>
      els.filter((e) => e.closest(".monaco-list-row").classList.contains("focused")).map((e) => e.textContent.trim()),
    ))[0];
    if (focused === label) {
      await page.keyboard.press("Enter");
      return;
    }
    await page.keyboard.press("ArrowDown");
    await sleep(50);
  }
  throw new Error(`could not focus "${label}" in the quick pick`);
}

async function openQuickInput(prefix) {
  await page.keyboard.press("Escape"); // nothing else half-open
  await page.keyboard.press("F1");
  await quickInputBox().waitFor({ state: "visible", timeout: 10_000 });
  await quickInputBox().fill(prefix);
}

/** F1, type the command's title, Enter on it. */
async function command(title) {
  await openQuickInput(`>${title}`);
  await pickRow(title);
}

/** Quick Open (F1 without the ">"): opens a workspace file in an editor. */
async function openFile(name) {
  await openQuickInput(name);
  await pickRow(name);
  await until(`the ${name} editor tab`, async () => (await activeTab()) === name, 10_000);
}

/** After a command that shows a run picker: picks the run with this prompt. */
async function pickRun(prompt) {
  await until("the run picker", async () => (await quickInput().isVisible()) && (await texts(".quick-input-list .label-name")).some((t) => t.includes(prompt)), 15_000);
  const label = (await texts(".quick-input-list .label-name")).find((t) => t.includes(prompt));
  await pickRow(label);
}

async function step(name, fn) {
  steps.push(name);
  const t0 = Date.now();
  try {
    const detail = await fn();
    passed += 1;
    console.log(`ok - ${name}${detail ? `: ${detail}` : ""} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
  } catch (err) {
    failed += 1;
    console.log(`not ok - ${name}`);
    await shot(`failed-${steps.length}`);
    const html = await page?.content().catch(() => undefined);
    if (html) writeFileSync(join(artifacts, `failed-${steps.length}.html`), html);
    throw err;
  }
}

async function cleanup() {
  await browser?.close().catch(() => undefined);
  if (server && server.exitCode === null) {
    try {
      process.kill(-server.pid, "SIGTERM"); // code-server, its extension host and the co-sidecar server
    } catch {
      // already gone
    }
    await Promise.race([new Promise((r) => server.once("exit", r)), sleep(5000)]);
    try {
      process.kill(-server.pid, "SIGKILL");
    } catch {
      // gone
    }
  }
}

/** The rows of the co-sidecar Runs view: label, description, codicon classes. */
const viewRows = () =>
  page.locator(".part.sidebar .monaco-list-row").evaluateAll((els) =>
    els.map((el) => ({
      label: (el.querySelector(".label-name")?.textContent ?? "").trim(),
      description: (el.querySelector(".label-description")?.textContent ?? "").replace(/\s+/g, " ").trim(),
      icon: [...(el.querySelector(".custom-view-tree-node-item-icon")?.classList ?? [])].find((c) => c.startsWith("codicon-")) ?? "",
      level: Number(el.getAttribute("aria-level") ?? 0),
    })),
  );
const viewRow = async (prompt) => (await viewRows()).find((r) => r.label.includes(prompt));

/** Clicks the co-sidecar activity bar item unless its Runs view is already showing. */
async function openRunsView() {
  const title = page.locator(".part.sidebar .composite.title");
  const shown = async () => (await title.isVisible().catch(() => false)) && /co-sidecar/i.test((await title.textContent().catch(() => "")) ?? "");
  const icon = page.locator('.activitybar .action-item a[aria-label^="co-sidecar"], .activitybar .action-item[aria-label^="co-sidecar"]').first();
  // The icon toggles: after a reload the workbench may restore the view just as we click, and
  // the click hides it again. So click, then look, and click again until it is shown.
  for (let attempt = 0; attempt < 5 && !(await shown()); attempt++) {
    await icon.click();
    if (await until("the Runs view", shown, 3_000).then(() => true, () => false)) return;
  }
  await until("the Runs view", shown, 10_000);
}

/** Right-click the Runs view's row of `prompt`; returns the menu's item labels, or clicks `item`. */
async function rowMenu(prompt, item) {
  const menu = page.locator(".context-view .monaco-menu");
  for (let attempt = 0; attempt < 3; attempt++) {
    await page.keyboard.press("Escape");
    await page.locator(".part.sidebar .monaco-list-row").filter({ hasText: prompt }).first().click({ button: "right" });
    await menu.waitFor({ state: "visible", timeout: 10_000 });
    const labels = (await menu.locator(".action-label").allTextContents()).map((t) => t.trim()).filter(Boolean);
    if (!item) return labels;
    const entry = menu.locator(".action-item").filter({ has: page.locator(".action-label", { hasText: new RegExp(`^${item}$`) }) }).first();
    await entry.hover();
    await entry.click();
    // A click while the menu is still laying out can be lost: then the menu stays open.
    if (await menu.waitFor({ state: "hidden", timeout: 2_000 }).then(() => true, () => false)) return labels;
  }
  throw new Error(`the context menu of "${prompt}" did not run ${item}`);
}

const TOTAL = 10;
try {
  // The user has no co-sidecar: not on PATH, and the python3 on PATH cannot import it.
  for (const dir of userPath.split(delimiter)) assert.ok(!existsSync(join(dir, "co-sidecar")), `co-sidecar in ${dir}`);
  const probe = spawnSync("python3", ["-c", "import co_sidecar"], { env: userEnv, cwd: base, encoding: "utf8" });
  assert.notEqual(probe.status, 0, "the user's python3 must not have co_sidecar installed");
  assert.match(probe.stderr, /No module named 'co_sidecar'/);
  const installed = execFileSync(
    codeServer,
    ["--install-extension", vsix, "--extensions-dir", extDir, "--user-data-dir", userData],
    { stdio: "pipe", encoding: "utf8" },
  );
  assert.match(installed, /co-sidecar.* was successfully installed/, installed);
  const port = await freePort();
  server = spawn(
    codeServer,
    [
      "--auth", "none", "--bind-addr", `127.0.0.1:${port}`, "--disable-telemetry", "--disable-update-check",
      "--disable-workspace-trust", "--user-data-dir", userData, "--extensions-dir", extDir, ws,
    ],
    // VSCODE_CLI=1: code-server skips resolving a login shell's environment (`bash -ilc`, up to
    // 10 s per extension host start) and uses this one, already the user's. On a loaded 2-core
    // machine that resolution timed out and delayed the host past step 6's reload wait.
    { stdio: ["ignore", "pipe", "pipe"], detached: true, env: { ...userEnv, VSCODE_CLI: "1" } },
  );
  server.stdout.on("data", (d) => serverLog.push(String(d)));
  server.stderr.on("data", (d) => serverLog.push(String(d)));
  await until("code-server to listen", () => serverLog.join("").includes("HTTP server listening"), 60_000);

  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    args: [
      "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync",
    ],
  });
  const context = await browser.newContext({ viewport: { width: 1280, height: 760 } });
  page = await context.newPage();
  page.setDefaultTimeout(20_000);
  await page.goto(`http://127.0.0.1:${port}/?folder=${encodeURIComponent(ws)}`, { waitUntil: "domcontentloaded" });
  await page.locator(".monaco-workbench").waitFor({ timeout: 60_000 });
  // Activation (workspaceContains:co-sidecar.toml) shows the status bar item.
  await until("the CO status bar item (activation)", async () => (await coStatus()) === "CO", 60_000);
  await page.locator(".monaco-workbench").click({ position: { x: 640, y: 380 } });
  const serverArgv = await until("the bundled server process", () => bundledServerProcess(), 60_000);
  console.log(
    `e2e: code-server up, extension active, server: ${serverArgv.join(" ")} (${((Date.now() - started) / 1000).toFixed(1)} s)`,
  );

  let runId;
  await step("1. CO: Run Task: progress, then the run succeeds", async () => {
    await command("CO: Run Task");
    await until("the prompt input", async () => (await texts(".quick-input-widget .quick-input-title")).some((t) => t.includes("CO: Run Task")), 10_000);
    await quickInputBox().fill(FIRST_PROMPT);
    await page.keyboard.press("Enter");
    const progress = await until("the progress notification and status bar", async () => {
      const n = (await notifications()).find((t) => t.includes("agent: working"));
      const s = await coStatus();
      return n && /CO: (running|launching)/.test(s) ? `${n} | ${s}` : undefined;
    }, 60_000);
    await shot("01-run-progress");
    const done = await until("the succeeded notification", async () => (await notifications()).find((t) => /CO run \w+ succeeded/.test(t)), 60_000);
    await until("the status bar to say succeeded", async () => (await coStatus()) === "CO: succeeded");
    await shot("02-run-succeeded");
    const m = manifestFor(FIRST_PROMPT);
    assert.ok(m, "a manifest for the run");
    assert.equal(m.state, "succeeded");
    runId = m.runId;
    assert.ok(done.includes(runId.slice(-6)), `the notification names the run ${runId}: ${done}`);
    return `"${progress}" → "${done}"`;
  });

  await step("2. CO: Preview Diff opens the diff editor for hello.txt", async () => {
    await command("CO: Preview Diff");
    await pickRun(FIRST_PROMPT);
    const diff = page.locator(".editor-group-container.active .monaco-diff-editor");
    await diff.waitFor({ state: "visible", timeout: 15_000 });
    const tab = await until("the diff editor tab", async () => (await activeTab()).includes("↔ CO run") && activeTab());
    assert.match(tab, /^hello\.txt \(modified\) ↔ CO run \w+/);
    const original = await until("the original side", async () => {
      const t = await viewText(diff.locator(".editor.original .monaco-editor"));
      return t.includes("hello world") && t;
    });
    const modified = await until("the modified side", async () => {
      const t = await viewText(diff.locator(".editor.modified .monaco-editor"));
      return t.includes("added by agent") && t;
    });
    assert.equal(original.trimEnd(), HELLO.trimEnd());
    assert.equal(modified.trimEnd(), HELLO_AFTER.trimEnd());
    await until("the diff decorations", async () => (await diff.locator(".line-insert, .char-insert").count()) > 0);
    await shot("03-diff-preview");
    return tab;
  });

  const helloEditorText = async () => viewText(activeEditor());
  await step("3. CO: Apply answered Cancel: nothing changes", async () => {
    await openFile("hello.txt");
    await until("hello.txt in the editor", async () => (await helloEditorText()).trimEnd() === HELLO.trimEnd());
    await command("CO: Apply");
    await pickRun(FIRST_PROMPT);
    const dialog = page.getByRole("dialog");
    await dialog.waitFor({ state: "visible", timeout: 15_000 });
    const message = (await dialog.textContent()).replace(/\s+/g, " ");
    assert.match(message, /Apply the changes of CO run \w+: 1 file/);
    await shot("04-apply-confirm");
    await dialog.getByRole("button", { name: "Cancel", exact: true }).click();
    await dialog.waitFor({ state: "hidden" });
    // Give a wrongly sent co/apply time to show up before asserting that nothing happened.
    await sleep(1500);
    assert.equal(await page.locator(".part.panel .edit-checkbox").count(), 0, "no refactor preview");
    assert.equal((await helloEditorText()).trimEnd(), HELLO.trimEnd(), "the editor still shows the old text");
    assert.equal(await page.locator(".editor-group-container.active .tab.active.dirty").count(), 0, "the editor is not dirty");
    assert.equal(readFileSync(join(ws, "hello.txt"), "utf8"), HELLO, "hello.txt unchanged on disk");
    const m = manifestFor(FIRST_PROMPT);
    assert.equal(m.apply ?? null, null, `no apply in the manifest: ${JSON.stringify(m.apply)}`);
    assert.equal(m.state, "succeeded");
    await shot("05-apply-cancelled");
    return "editor, disk and manifest unchanged";
  });

  await step("4. CO: Apply answered Apply: the editor shows the edit, Save All writes it", async () => {
    await command("CO: Apply");
    await pickRun(FIRST_PROMPT);
    const dialog = page.getByRole("dialog");
    await dialog.waitFor({ state: "visible", timeout: 15_000 });
    await dialog.getByRole("button", { name: "Apply", exact: true }).click();
    // VS Code's refactor preview: the changes start unticked; tick the file, then Apply.
    const fileBox = page
      .locator('.part.panel .monaco-list-row[role="checkbox"]')
      .filter({ hasText: "hello.txt" })
      .locator(".edit-checkbox")
      .first();
    await fileBox.waitFor({ state: "visible", timeout: 15_000 });
    assert.equal(await fileBox.getAttribute("aria-checked"), "false", "the change starts unticked");
    await fileBox.click();
    await until("the change ticked", async () => (await fileBox.getAttribute("aria-checked")) === "true", 5_000);
    await shot("06-refactor-preview");
    await page.locator(".part.panel").getByRole("button", { name: "Apply", exact: true }).click();
    const applied = await until("the applied notification", async () => (await notifications()).find((t) => /applied 1 file/.test(t)));
    await openFile("hello.txt");
    await until("the new text in the editor", async () => (await helloEditorText()).trimEnd() === HELLO_AFTER.trimEnd());
    // Applied to the document, not yet to the file (files.autoSave is off).
    assert.equal(await page.locator(".editor-group-container.active .tab.active.dirty").count(), 1, "the editor is dirty");
    assert.equal(readFileSync(join(ws, "hello.txt"), "utf8"), HELLO, "not on disk before Save All");
    const m = await until("the apply in the manifest", () => {
      const found = manifestFor(FIRST_PROMPT);
      return found?.apply && found;
    });
    assert.equal(m.apply.applied, true, JSON.stringify(m.apply));
    assert.equal(m.state, "applied");
    await shot("07-applied");
    await command("File: Save All Files");
    await until("hello.txt saved", () => readFileSync(join(ws, "hello.txt"), "utf8") === HELLO_AFTER, 10_000);
    await until("the tab not dirty", async () => (await page.locator(".editor-group-container.active .tab.active.dirty").count()) === 0, 5_000);
    await shot("08-saved");
    const { applied: ok, strategy, paths } = m.apply;
    return `"${applied}"; editor dirty with the new text, disk new after Save All; manifest apply ${JSON.stringify({ applied: ok, strategy, paths })}`;
  });

  await step("5. CO: Cancel of a running task: cancelled, the agent process is gone", async () => {
    await command("CO: Run Task");
    await until("the prompt input", async () => (await texts(".quick-input-widget .quick-input-title")).some((t) => t.includes("CO: Run Task")), 10_000);
    await quickInputBox().fill(SECOND_PROMPT);
    await page.keyboard.press("Enter");
    await until("the status bar to say running", async () => /^CO: running\b/.test(await coStatus()));
    const running = await until("the agent's pid in the manifest", () => {
      const m = manifestFor(SECOND_PROMPT);
      return m?.state === "running" && m.executor?.pid && m;
    });
    const pid = running.executor.pid;
    assert.ok(alive(pid), `agent pid ${pid} runs`);
    await until("the agent's output", async () => (await notifications()).some((t) => t.includes("sleeping until cancelled")));
    await shot("09-second-task-running");
    await command("CO: Cancel");
    await pickRun(SECOND_PROMPT);
    await until("the status bar to say cancelled", async () => (await coStatus()) === "CO: cancelled", 20_000);
    const note = await until("the cancelled notification", async () => (await notifications()).find((t) => /cancelled/.test(t)));
    const m = await until("cancelled in the manifest", () => manifestFor(SECOND_PROMPT)?.state === "cancelled" && manifestFor(SECOND_PROMPT));
    await until(`agent pid ${pid} to exit`, () => !alive(pid), 15_000);
    await shot("10-cancelled");
    return `${note}; manifest ${m.state}; agent pid ${pid} gone`;
  });

  await step("6. The Runs view: runs with their states, a live clock, Apply from the context menu, rebuilt after a reload, Open Manifest", async () => {
    await page.keyboard.press("Escape");
    await openRunsView();
    // The earlier runs, newest first, with their states and the applied run's diff stats.
    const before = await until("the earlier runs in the view", async () => {
      const rows = await viewRows();
      const first = rows.find((r) => r.label === FIRST_PROMPT);
      const second = rows.find((r) => r.label === SECOND_PROMPT);
      return first && second && /^applied · local · \d+s · \+2 -1 in 1 file$/.test(first.description) &&
        /^cancelled · local/.test(second.description) && rows;
    });
    assert.deepEqual(before.map((r) => r.label), [SECOND_PROMPT, FIRST_PROMPT], "newest first");
    assert.equal(before.find((r) => r.label === FIRST_PROMPT).icon, "codicon-check-all");
    // A third task from the view's title bar; its row appears at the top and its clock moves
    // while the agent prints nothing.
    await page.locator(".part.sidebar .title-actions .action-label[aria-label*='Run Task']").click();
    await until("the prompt input", async () => (await texts(".quick-input-widget .quick-input-title")).some((t) => t.includes("CO: Run Task")), 10_000);
    await quickInputBox().fill(THIRD_PROMPT);
    await page.keyboard.press("Enter");
    const first = await until("the new run running in the view", async () => {
      const r = await viewRow(THIRD_PROMPT);
      const m = r && /^running · local · (\d+)s · (.+)$/.exec(r.description);
      // The step: the agent's first line (it then stays silent for 5 s).
      return m && /agent: pid \d+: write the notes quietly/.test(m[2]) && { seconds: Number(m[1]), step: m[2], row: r };
    }, 30_000);
    assert.equal((await viewRows())[0].label, THIRD_PROMPT, "the newest run on top");
    await shot("11-runs-view-running");
    const later = await until("the elapsed time to move while the agent is silent", async () => {
      const r = await viewRow(THIRD_PROMPT);
      const m = r && /^running · local · (\d+)s · (.+)$/.exec(r.description);
      return m && Number(m[1]) > first.seconds && m[2] === first.step && { seconds: Number(m[1]), status: await coStatus() };
    }, 10_000);
    assert.match(later.status, /^CO: running \d+s · agent: pid/, "the status bar's clock and step");
    const done = await until("the run succeeded in the view", async () => {
      const r = await viewRow(THIRD_PROMPT);
      return r && /^succeeded · local · \d+s · \+1 -0 in 1 file$/.test(r.description) && r;
    }, 30_000);
    assert.equal(done.icon, "codicon-check");
    const third = manifestFor(THIRD_PROMPT);
    await until("its succeeded notification", async () => (await notifications()).some((t) => t.includes(`CO run ${third.runId.slice(-6)} succeeded`)));
    await shot("12-runs-view-succeeded");
    // Apply from the row's context menu.
    const items = await rowMenu(THIRD_PROMPT);
    for (const want of ["Preview Diff", "Apply", "Reject", "Open Manifest"]) assert.ok(items.includes(want), `context menu ${items}`);
    assert.ok(!items.includes("Cancel"), `no Cancel for a finished run: ${items}`);
    await shot("13-runs-view-context-menu");
    await rowMenu(THIRD_PROMPT, "Apply");
    const dialog = page.getByRole("dialog");
    await dialog.waitFor({ state: "visible", timeout: 15_000 });
    assert.match((await dialog.textContent()).replace(/\s+/g, " "), /Apply the changes of CO run \w+: 1 file/);
    await dialog.getByRole("button", { name: "Apply", exact: true }).click();
    const fileBox = page
      .locator('.part.panel .monaco-list-row[role="checkbox"]')
      .filter({ hasText: "notes.txt" })
      .locator(".edit-checkbox")
      .first();
    await fileBox.waitFor({ state: "visible", timeout: 15_000 });
    await fileBox.click();
    await until("the change ticked", async () => (await fileBox.getAttribute("aria-checked")) === "true", 5_000);
    await page.locator(".part.panel").getByRole("button", { name: "Apply", exact: true }).click();
    await until("its applied notification", async () => (await notifications()).some((t) => t.includes(`applied 1 file (+1 −0) from run ${third.runId.slice(-6)}`)));
    // The edit created notes.txt and opened it with the agent's text, unsaved.
    await page.locator('.editor-group-container .tab[aria-label^="notes.txt"]').first().click();
    await until("the notes.txt tab", async () => (await activeTab()).startsWith("notes.txt"), 10_000);
    await until("the notes in the editor", async () => (await viewText(activeEditor())).trimEnd() === NOTES.trimEnd());
    await command("File: Save All Files");
    await until("notes.txt on disk", () => existsSync(join(ws, "notes.txt")) && readFileSync(join(ws, "notes.txt"), "utf8") === NOTES, 10_000);
    const m = await until("the apply in the manifest", () => manifestFor(THIRD_PROMPT)?.state === "applied" && manifestFor(THIRD_PROMPT));
    assert.equal(m.apply.applied, true);
    assert.deepEqual(m.apply.paths, ["notes.txt"]);
    await openRunsView();
    await until("the row to say applied", async () => /^applied · /.test((await viewRow(THIRD_PROMPT))?.description ?? ""));
    await shot("14-runs-view-applied");
    // A window reload: a new extension host and server; the view is rebuilt from co/list.
    await page.reload({ waitUntil: "domcontentloaded" });
    await page.locator(".monaco-workbench").waitFor({ timeout: 60_000 });
    await openRunsView();
    const rebuilt = await until("the rebuilt view", async () => {
      const rows = await viewRows();
      return rows.length === 3 && rows.every((r) => /^(applied|cancelled) · local/.test(r.description)) && rows;
    }, 60_000);
    assert.deepEqual(rebuilt.map((r) => r.label), [THIRD_PROMPT, SECOND_PROMPT, FIRST_PROMPT]);
    assert.match(rebuilt[0].description, /^applied · local · \d+s · \+1 -0 in 1 file$/);
    await shot("15-runs-view-rebuilt");
    // Open Manifest from the context menu: the run's manifest.json from .runs/.
    await rowMenu(THIRD_PROMPT, "Open Manifest");
    await until("the manifest.json tab", async () => (await activeTab()).startsWith("manifest.json"), 10_000);
    const shown = await until("the manifest's text", async () => {
      const t = await viewText(activeEditor());
      return t.includes(third.runId) && t;
    });
    assert.match(shown, /"state": "applied"/);
    return rebuilt.map((r) => `${r.label}: ${r.description}`).join(" | ");
  });

  await step("7. CO: Apply with the file pick and the refactor preview's choices: two files applied, the rest left", async () => {
    await command("CO: Run Task");
    await until("the prompt input", async () => (await texts(".quick-input-widget .quick-input-title")).some((t) => t.includes("CO: Run Task")), 10_000);
    await quickInputBox().fill(FOURTH_PROMPT);
    await page.keyboard.press("Enter");
    const run = await until("the run to succeed", () => manifestFor(FOURTH_PROMPT)?.state === "succeeded" && manifestFor(FOURTH_PROMPT), 60_000);
    await command("CO: Apply");
    await pickRun(FOURTH_PROMPT);
    // The file pick: every file ticked, with its +/- counts.
    const rows = page.locator(".quick-input-widget .quick-input-list .monaco-list-row");
    await until("the file pick", async () => (await rows.locator(".label-name").allTextContents()).some((t) => t.trim() === "M four.txt"), 15_000);
    const described = await texts(".quick-input-widget .quick-input-list .monaco-list-row .label-description");
    assert.deepEqual(described, ["+1 −1", "+1 −1", "+1 −1", "+1 −1"], "+/- counts");
    const ticked = () => rows.evaluateAll((els) => els.map((e) => e.getAttribute("aria-checked")));
    assert.deepEqual(await ticked(), ["true", "true", "true", "true"], "every file starts ticked");
    await shot("16-file-pick");
    await rows.filter({ hasText: "four.txt" }).locator(".monaco-checkbox").first().click();
    await until("four.txt unticked", async () => (await ticked()).filter((t) => t === "true").length === 3, 5_000);
    await page.locator(".quick-input-widget").getByRole("button", { name: "OK" }).click().catch(() => page.keyboard.press("Enter"));
    const dialog = page.getByRole("dialog").filter({ hasText: "Apply the changes of CO run" });
    await dialog.waitFor({ state: "visible", timeout: 15_000 });
    assert.match((await dialog.textContent()).replace(/\s+/g, " "), /Apply the changes of CO run \w+: 3 files/);
    await dialog.getByRole("button", { name: "Apply", exact: true }).click();
    // The refactor preview: tick one.txt and two.txt, leave three.txt unticked.
    const previewRow = (name) => page.locator('.part.panel .monaco-list-row[role="checkbox"]').filter({ hasText: name });
    await previewRow("three.txt").first().waitFor({ state: "visible", timeout: 15_000 });
    assert.equal(await previewRow("four.txt").count(), 0, "four.txt is not in the edit");
    for (const name of ["one.txt", "two.txt"]) {
      const box = previewRow(name).locator(".edit-checkbox").first();
      if ((await box.getAttribute("aria-checked")) !== "true") await box.click();
      await until(`${name} ticked`, async () => (await box.getAttribute("aria-checked")) === "true", 5_000);
    }
    assert.notEqual(await previewRow("three.txt").locator(".edit-checkbox").first().getAttribute("aria-checked"), "true");
    await shot("17-two-of-four");
    await page.locator(".part.panel").getByRole("button", { name: "Apply", exact: true }).click();
    const note = await until("the partial notification", async () => (await notifications()).find((t) => t.includes("Left: ")));
    const saved = () => ["one.txt", "two.txt"].every((n) => readFileSync(join(ws, n), "utf8") === `${n} changed by the agent\n`);
    for (let i = 0; i < 3 && !saved(); i++) {
      await page.locator('.editor-group-container .tab[aria-label^="one.txt"]').first().click();
      await command("File: Save All Files");
      await until("two files on disk", saved, 5_000).catch(() => undefined);
    }
    assert.ok(saved(), "one.txt and two.txt saved with the agent's text");
    for (const n of ["three.txt", "four.txt"]) assert.equal(readFileSync(join(ws, n), "utf8"), `${n}\n`, `${n} unchanged`);
    const m = await until("the partial apply in the manifest", () => manifestFor(FOURTH_PROMPT)?.state === "partially_applied" && manifestFor(FOURTH_PROMPT));
    assert.deepEqual(Object.keys(m.appliedParts).sort(), ["one.txt", "two.txt"]);
    assert.deepEqual([...m.apply.remaining].sort(), ["four.txt", "three.txt"]);
    assert.deepEqual(m.apply.skippedPaths, ["three.txt"], "left out in the refactor preview");
    assert.equal(m.apply.outcome, "partial");
    return `run ${run.runId.slice(-6)}: "${note}"; applied ${Object.keys(m.appliedParts).join(", ")}; left ${m.apply.remaining.join(", ")}`;
  });

  await step("8. Follow Up… from the Runs view: the follow-up shows under its run; Apply on it applies both", async () => {
    await page.keyboard.press("Escape");
    await openRunsView();
    await page.locator(".part.sidebar .title-actions .action-label[aria-label*='Run Task']").click();
    await until("the prompt input", async () => (await texts(".quick-input-widget .quick-input-title")).some((t) => t.includes("CO: Run Task")), 10_000);
    await quickInputBox().fill(PLAN_PROMPT);
    await page.keyboard.press("Enter");
    await until("the first run succeeded in the view", async () =>
      /^succeeded · local · \d+s · \+1 -0 in 1 file$/.test((await viewRow(PLAN_PROMPT))?.description ?? ""), 30_000);
    const items = await rowMenu(PLAN_PROMPT);
    assert.ok(items.includes("Follow Up…"), `context menu ${items}`);
    await rowMenu(PLAN_PROMPT, "Follow Up…");
    await until("the follow-up prompt", async () => (await texts(".quick-input-widget .quick-input-title")).some((t) => t.includes("CO: Follow Up run")), 10_000);
    await quickInputBox().fill(FOLLOW_PROMPT);
    await page.keyboard.press("Enter");
    const linked = await until("the follow-up under its run, succeeded", async () => {
      const rows = await viewRows();
      const at = rows.findIndex((r) => r.label === PLAN_PROMPT);
      const child = rows[at + 1];
      return at >= 0 && child?.label === FOLLOW_PROMPT && child.level === rows[at].level + 1 &&
        /^succeeded · local · \d+s · \+1 -0 in 1 file$/.test(child.description) && { parent: rows[at], child };
    }, 45_000);
    const parent = manifestFor(PLAN_PROMPT);
    const child = manifestFor(FOLLOW_PROMPT);
    assert.equal(child.parentRunId, parent.runId);
    assert.equal(child.rootRunId, parent.runId);
    await shot("16-follow-up-linked");
    // Apply the follow-up: its change is the chain's (the first run's file and the follow-up's line).
    await rowMenu(FOLLOW_PROMPT, "Apply");
    const dialog = page.locator(".monaco-dialog-box"); // not the finish notification (also a "dialog")
    await dialog.waitFor({ state: "visible", timeout: 15_000 });
    assert.match((await dialog.textContent()).replace(/\s+/g, " "), /Apply the changes of CO run \w+: 1 file/);
    await dialog.getByRole("button", { name: "Apply", exact: true }).click();
    const fileBox = page
      .locator('.part.panel .monaco-list-row[role="checkbox"]')
      .filter({ hasText: "plan.txt" })
      .locator(".edit-checkbox")
      .first();
    await fileBox.waitFor({ state: "visible", timeout: 15_000 });
    await fileBox.click();
    await until("the change ticked", async () => (await fileBox.getAttribute("aria-checked")) === "true", 5_000);
    await page.locator(".part.panel").getByRole("button", { name: "Apply", exact: true }).click();
    const note = await until("its applied notification", async () =>
      (await notifications()).find((t) => t.includes(`applied 1 file (+2 −0) from run ${child.runId.slice(-6)}`)));
    await page.locator('.editor-group-container .tab[aria-label^="plan.txt"]').first().click();
    await until("plan.txt in the editor", async () => (await viewText(activeEditor())).trimEnd() === PLAN_AFTER.trimEnd());
    await command("File: Save All Files");
    await until("plan.txt on disk", () => existsSync(join(ws, "plan.txt")) && readFileSync(join(ws, "plan.txt"), "utf8") === PLAN_AFTER, 10_000);
    const applied = await until("the apply in the manifest", () => manifestFor(FOLLOW_PROMPT)?.state === "applied" && manifestFor(FOLLOW_PROMPT));
    assert.equal(applied.followUp.appliedView, "cumulative");
    await openRunsView();
    await until("the follow-up row to say applied", async () => /^applied · /.test((await viewRow(FOLLOW_PROMPT))?.description ?? ""));
    await shot("17-follow-up-applied");
    return `${linked.parent.label} → ${linked.child.label} (level ${linked.child.level}); "${note}"`;
  });

  await step("9. CO: Choose Hunks… on a run's diff editor: the hunk kept is applied, the other left", async () => {
    await command("CO: Run Task");
    await until("the prompt input", async () => (await texts(".quick-input-widget .quick-input-title")).some((t) => t.includes("CO: Run Task")), 10_000);
    await quickInputBox().fill(FIFTH_PROMPT);
    await page.keyboard.press("Enter");
    const run = await until("the run to succeed", () => manifestFor(FIFTH_PROMPT)?.state === "succeeded" && manifestFor(FIFTH_PROMPT), 60_000);
    await command("CO: Preview Diff");
    await pickRun(FIFTH_PROMPT);
    const diff = page.locator(".editor-group-container.active .monaco-diff-editor");
    await diff.waitFor({ state: "visible", timeout: 15_000 });
    await until("the long.txt diff tab", async () => /^long\.txt \(modified\) ↔ CO run/.test(await activeTab()));
    await diff.locator(".editor.modified .monaco-editor").first().click();
    await command("CO: Choose Hunks…");
    const rows = page.locator(".quick-input-widget .quick-input-list .monaco-list-row");
    await until("the hunk pick", async () => (await texts(".quick-input-widget .quick-input-list .label-name")).some((t) => t.startsWith("Hunk 2 @@")), 15_000);
    // A row's detail line (its first changed lines) is a label-name too.
    const shown = await texts(".quick-input-widget .quick-input-list .label-name");
    const labels = shown.filter((t) => t.startsWith("Hunk "));
    assert.equal(labels.length, 2, `two hunks: ${shown.join(" | ")}`);
    assert.ok(shown.includes("+bottom by the agent"), `hunk 2's first changed line: ${shown.join(" | ")}`);
    assert.match(labels[0], /^Hunk 1 @@ -1,\d+ \+1,\d+ @@$/);
    const ticked = () => rows.evaluateAll((els) => els.map((e) => e.getAttribute("aria-checked")));
    assert.deepEqual(await ticked(), ["true", "true"], "every hunk starts ticked");
    await shot("18-hunk-pick");
    await rows.filter({ hasText: "Hunk 1" }).locator(".monaco-checkbox").first().click();
    await until("hunk 1 unticked", async () => (await ticked()).join() === "false,true", 5_000);
    await page.locator(".quick-input-widget").getByRole("button", { name: "OK" }).click().catch(() => page.keyboard.press("Enter"));
    const dialog = page.getByRole("dialog").filter({ hasText: "Apply the changes of CO run" });
    await dialog.waitFor({ state: "visible", timeout: 15_000 });
    assert.match((await dialog.textContent()).replace(/\s+/g, " "), /Apply the changes of CO run \w+: 1 file /);
    await dialog.getByRole("button", { name: "Apply", exact: true }).click();
    const box = page.locator('.part.panel .monaco-list-row[role="checkbox"]').filter({ hasText: "long.txt" }).locator(".edit-checkbox").first();
    await box.waitFor({ state: "visible", timeout: 15_000 });
    if ((await box.getAttribute("aria-checked")) !== "true") await box.click();
    await until("long.txt ticked", async () => (await box.getAttribute("aria-checked")) === "true", 5_000);
    await page.locator(".part.panel").getByRole("button", { name: "Apply", exact: true }).click();
    const note = await until("the partial notification", async () => (await notifications()).find((t) => t.includes("Left: long.txt")));
    const expected = `${LONG}bottom by the agent\n`;
    for (let i = 0; i < 3 && readFileSync(join(ws, "long.txt"), "utf8") !== expected; i++) {
      await openFile("long.txt");
      await command("File: Save All Files");
      await until("long.txt on disk", () => readFileSync(join(ws, "long.txt"), "utf8") === expected, 5_000).catch(() => undefined);
    }
    assert.equal(readFileSync(join(ws, "long.txt"), "utf8"), expected, "only hunk 2 applied: the top line is unchanged");
    const m = await until("the partial apply in the manifest", () => manifestFor(FIFTH_PROMPT)?.state === "partially_applied" && manifestFor(FIFTH_PROMPT));
    assert.deepEqual(m.appliedParts, { "long.txt": [2] });
    assert.deepEqual(m.apply.remaining, ["long.txt"]);
    return `run ${run.runId.slice(-6)}: ${shown.join(" | ")}; "${note}"`;
  });

  await step("10. A conflict: the modal offers its ways out; Apply Clean Files Only takes the clean file and leaves the other untouched", async () => {
    // three.txt, left by step 7, is now edited on disk on the line the run changes.
    writeFileSync(join(ws, "three.txt"), "three.txt, mine\n");
    await command("CO: Apply");
    await pickRun(FOURTH_PROMPT);
    const modal = page.getByRole("dialog").filter({ hasText: "would not apply cleanly" });
    await modal.waitFor({ state: "visible", timeout: 15_000 });
    const said = (await modal.textContent()).replace(/\s+/g, " ");
    assert.match(said, /1 file of run \w+ would not apply cleanly/);
    assert.ok(said.includes("three.txt"), said);
    for (const name of ["Apply with Conflict Markers", "Open in Merge Editor", "Choose Files…"]) {
      assert.equal(await modal.getByRole("button", { name }).count(), 1, `the modal offers ${name}`);
    }
    await shot("19-conflict-modal");
    await modal.getByRole("button", { name: "Apply Clean Files Only" }).click();
    const dialog = page.getByRole("dialog").filter({ hasText: "Apply the changes of CO run" });
    await dialog.waitFor({ state: "visible", timeout: 15_000 });
    assert.match((await dialog.textContent()).replace(/\s+/g, " "), /Apply the changes of CO run \w+: 1 file /);
    await dialog.getByRole("button", { name: "Apply", exact: true }).click();
    const box = page.locator('.part.panel .monaco-list-row[role="checkbox"]').filter({ hasText: "four.txt" }).locator(".edit-checkbox").first();
    await box.waitFor({ state: "visible", timeout: 15_000 });
    if ((await box.getAttribute("aria-checked")) !== "true") await box.click();
    await until("four.txt ticked", async () => (await box.getAttribute("aria-checked")) === "true", 5_000);
    await page.locator(".part.panel").getByRole("button", { name: "Apply", exact: true }).click();
    const expected = "four.txt changed by the agent\n";
    for (let i = 0; i < 3 && readFileSync(join(ws, "four.txt"), "utf8") !== expected; i++) {
      await openFile("four.txt");
      await command("File: Save All Files");
      await until("four.txt on disk", () => readFileSync(join(ws, "four.txt"), "utf8") === expected, 5_000).catch(() => undefined);
    }
    assert.equal(readFileSync(join(ws, "four.txt"), "utf8"), expected, "the clean file applied");
    assert.equal(readFileSync(join(ws, "three.txt"), "utf8"), "three.txt, mine\n", "the conflicting file untouched, no markers");
    const m = await until("four.txt in the manifest", () => manifestFor(FOURTH_PROMPT)?.appliedParts?.["four.txt"] && manifestFor(FOURTH_PROMPT));
    assert.equal(m.state, "partially_applied");
    assert.deepEqual(m.apply.remaining, ["three.txt"]);
    return `"${said.slice(0, 80)}…"; applied four.txt; left ${m.apply.remaining.join(", ")}`;
  });

  if (process.env.CO_E2E_UPDATE_DOCS === "1") {
    const images = join(root, "docs", "images");
    mkdirSync(images, { recursive: true });
    for (const [from, to] of [
      ["01-run-progress", "vscode-run-progress"],
      ["03-diff-preview", "vscode-diff-preview"],
      ["04-apply-confirm", "vscode-apply-confirm"],
    ]) {
      copyFileSync(join(artifacts, `${from}.png`), join(images, `${to}.png`));
    }
    console.log(`e2e: copied 3 screenshots to ${images}`);
  }
} catch (err) {
  if (failed === 0) {
    failed = 1; // before the first step: code-server, the extension's install or its activation
    console.log("not ok - setup: code-server, installing the .vsix, the extension's activation");
    await shot("failed-setup");
  }
  console.error("e2e: FAILED:", err?.stack ?? err);
  console.error("--- code-server output (tail) ---\n" + serverLog.join("").slice(-3000));
  try {
    cpSync(join(userData, "logs"), join(artifacts, "logs"), { recursive: true });
  } catch {
    // no logs yet
  }
} finally {
  clearTimeout(watchdog);
  await cleanup();
  writeFileSync(join(artifacts, "code-server.log"), serverLog.join(""));
  if (passed === TOTAL || process.env.CO_E2E_KEEP !== "1") rmSync(base, { recursive: true, force: true });
  else console.error(`e2e: kept the workspace and code-server's data in ${base} (CO_E2E_KEEP=1)`);
  const notRun = Math.max(0, TOTAL - steps.length);
  if (passed !== TOTAL) process.exitCode = 1;
  console.log(
    `e2e: ${passed} passed, ${failed} failed${notRun ? `, ${notRun} not run` : ""} ` +
      `(${((Date.now() - started) / 1000).toFixed(1)} s; screenshots in ${artifacts})`,
  );
}
