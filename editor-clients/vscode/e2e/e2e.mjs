// Smoke test: the packaged extension in a real VS Code (code-server) with the real
// server, driven through the UI by headless Chromium. Asserts, for a temp git repo:
//   activation (status bar "CO") → CO: Run Task → progress → "succeeded" notification
//   → CO: Preview Diff opens VS Code's diff editor → CO: Apply: modal; Cancel leaves the
//   file as it was; Apply + refactor preview (ticked) changes the file on disk.
// Usage: node smoke.mjs path/to/co-sidecar.vsix   (run.sh sets up Node 24 and deps)
// Screenshots go to ../out/smoke/.
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
const puppeteer = require("puppeteer-core");
const root = resolve(here, "..", "..", "..");
const vsix = resolve(process.argv[2] ?? join(here, "..", "co-sidecar.vsix"));
const shots = join(here, "..", "out", "smoke");
mkdirSync(shots, { recursive: true });
const codeServer = join(here, "node_modules", ".bin", "code-server");
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const base = mkdtempSync(join(tmpdir(), "co-vscode-smoke-"));
const ws = join(base, "ws");
const userData = join(base, "user-data");
const extDir = join(base, "extensions");
mkdirSync(ws);
mkdirSync(join(userData, "User"), { recursive: true });
mkdirSync(join(userData, "Machine"), { recursive: true });

// The workspace: a git repo with co-sidecar.toml (also the activation event) naming a tiny agent.
const agent = join(base, "agent.py");
writeFileSync(
  agent,
  [
    "import pathlib, sys, time",
    'print("agent: starting: " + sys.argv[1], flush=True)',
    "time.sleep(3)",
    'p = pathlib.Path("hello.txt"); p.write_text(p.read_text().replace("world", "there") + "added by agent\\n")',
    'pathlib.Path("NOTES.md").write_text("# notes\\n" + sys.argv[1] + "\\n")',
    'print("agent: done", flush=True)',
    "",
  ].join("\n"),
);
const HELLO = "hello world\nsecond line\n";
writeFileSync(join(ws, "hello.txt"), HELLO);
writeFileSync(join(ws, ".gitignore"), ".runs/\n");
writeFileSync(
  join(ws, "co-sidecar.toml"),
  `[local]\nagentCommand = [${JSON.stringify(join(root, ".venv", "bin", "python"))}, ${JSON.stringify(agent)}, "{prompt}"]\n`,
);
const git = (...args) =>
  execFileSync("git", ["-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false", ...args], {
    cwd: ws,
    stdio: "pipe",
  });
git("init", "-q", "-b", "main");
git("add", "-A");
git("commit", "-qm", "init");
// code-server is a remote setup: machine-scoped settings (co-sidecar.serverCommand) belong
// in the Machine (remote) settings; the rest in User settings.
const serverCommand = [join(root, ".venv", "bin", "co-sidecar"), "serve"];
writeFileSync(join(userData, "Machine", "settings.json"), JSON.stringify({ "co-sidecar.serverCommand": serverCommand }));
writeFileSync(
  join(userData, "User", "settings.json"),
  JSON.stringify(
    {
      "security.workspace.trust.enabled": false,
      "workbench.startupEditor": "none",
      "workbench.colorTheme": "Default Light Modern",
      "chat.disableAIFeatures": true,
      "co-sidecar.serverCommand": serverCommand,
      "co-sidecar.defaultMode": "local",
    },
    null,
    2,
  ),
);

const freePort = () =>
  new Promise((res) => {
    const srv = createServer();
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => res(port));
    });
  });

let server;
let browser;
const log = [];
try {
  execFileSync(codeServer, ["--install-extension", vsix, "--extensions-dir", extDir, "--user-data-dir", userData], {
    stdio: "pipe",
  });
  const port = await freePort();
  server = spawn(
    codeServer,
    [
      "--auth", "none", "--bind-addr", `127.0.0.1:${port}`, "--extensions-dir", extDir,
      "--user-data-dir", userData, "--disable-telemetry", "--disable-update-check", ws,
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  server.stdout.on("data", (d) => log.push(String(d)));
  server.stderr.on("data", (d) => log.push(String(d)));
  for (let i = 0; i < 100 && !log.join("").includes("HTTP server listening"); i++) await sleep(100);

  browser = await puppeteer.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--window-size=1400,900"],
    defaultViewport: { width: 1400, height: 900 },
  });
  const page = await browser.newPage();
  const shot = (name) => page.screenshot({ path: join(shots, `${name}.png`) });
  const texts = (sel) => page.$$eval(sel, (els) => els.map((e) => e.textContent.trim()).filter(Boolean));
  const until = async (what, fn, ms = 30000) => {
    const end = Date.now() + ms;
    for (;;) {
      const v = await fn();
      if (v) return v;
      if (Date.now() > end) {
        await shot(`failed-${what.replace(/\W+/g, "-")}`);
        throw new Error(`timed out waiting for ${what}`);
      }
      await sleep(250);
    }
  };
  const command = async (title) => {
    await page.mouse.click(700, 17); // the command center opens quick access
    await sleep(700);
    await page.keyboard.type(`>${title}`, { delay: 15 });
    await sleep(700);
    await page.keyboard.press("Enter");
    await sleep(700);
  };
  const clickButton = async (scope, label) => {
    for (const b of await page.$$(`${scope} .monaco-button`)) {
      if ((await b.evaluate((e) => e.textContent.trim())) === label) return b.click();
    }
    throw new Error(`no "${label}" button in ${scope}`);
  };

  await page.goto(`http://127.0.0.1:${port}/?folder=${encodeURIComponent(ws)}`, { waitUntil: "domcontentloaded" });
  await page.waitForSelector(".monaco-workbench", { timeout: 60000 });
  await until("the CO status bar item (activation)", async () => (await texts(".statusbar-item")).some((t) => t.startsWith("CO")));
  await sleep(2000);
  await page.mouse.click(700, 400);
  await shot("01-activated");
  console.log("ok - activated: status bar shows CO");

  await command("CO: Run Task");
  await page.keyboard.type("say hello there", { delay: 10 });
  await page.keyboard.press("Enter");
  await until("the progress notification", async () => (await texts(".notification-list-item-message")).some((t) => /running|queued|launching|agent/.test(t)), 10000);
  await shot("02-progress");
  console.log("ok - progress notification:", (await texts(".notification-list-item-message")).join(" | "));
  const done = await until("the succeeded notification", async () =>
    (await texts(".notification-list-item-message")).find((t) => /succeeded/.test(t)),
  );
  assert.match((await texts(".statusbar-item")).join(" "), /CO: succeeded/);
  await shot("03-succeeded");
  console.log("ok - run succeeded:", done);

  await command("CO: Preview Diff");
  await page.keyboard.press("Enter"); // the succeeded run
  await sleep(1200);
  await shot("04-pick-file");
  await page.keyboard.press("ArrowDown");
  await page.keyboard.press("ArrowDown");
  await page.keyboard.press("Enter"); // the first file
  const tab = await until("the diff editor tab", async () => (await texts(".tab .label-name")).find((t) => t.includes("↔ CO run")));
  await sleep(800);
  await shot("05-diff");
  console.log("ok - diff editor:", tab);

  await command("CO: Apply");
  await page.keyboard.press("Enter");
  const dialog = await until("the confirmation dialog", async () => (await texts(".monaco-dialog-box")).join(" "));
  assert.match(dialog, /Apply the changes of CO run \w+: 2 files/);
  await shot("06-confirm");
  await clickButton(".monaco-dialog-box", "Cancel");
  await sleep(1500);
  assert.equal(readFileSync(join(ws, "hello.txt"), "utf8"), HELLO, "declined: file unchanged");
  console.log("ok - declined the confirmation: hello.txt unchanged");

  await command("CO: Apply");
  await page.keyboard.press("Enter");
  await until("the confirmation dialog again", async () => (await texts(".monaco-dialog-box")).length > 0);
  await clickButton(".monaco-dialog-box", "Apply");
  await until("the refactor preview", async () => (await page.$$(".monaco-tl-row .edit-checkbox")).length > 0);
  for (const box of await page.$$(".monaco-tl-row .edit-checkbox")) {
    const label = await box.evaluate((e) => e.closest(".monaco-tl-row").textContent);
    if (label.includes("NOTES.md") || label.includes("hello.txt")) await box.click();
  }
  await sleep(500);
  await shot("07-refactor-preview");
  await clickButton(".pane-body", "Apply");
  const applied = await until("the applied notification", async () =>
    (await texts(".notification-list-item-message")).find((t) => /applied/.test(t)),
  );
  await sleep(1000);
  await shot("08-applied");
  assert.equal(readFileSync(join(ws, "hello.txt"), "utf8"), "hello there\nsecond line\nadded by agent\n");
  assert.equal(readFileSync(join(ws, "NOTES.md"), "utf8"), "# notes\nsay hello there\n");
  console.log("ok - applied after confirmation:", applied);
  console.log("smoke: 6 passed, 0 failed");
} catch (err) {
  console.error("smoke: FAILED:", err);
  console.error(log.join("").slice(-3000));
  console.log("smoke: 0 passed, 1 failed");
  process.exitCode = 1;
} finally {
  await browser?.close().catch(() => undefined);
  if (server && server.exitCode === null) server.kill("SIGTERM");
  await sleep(500);
  rmSync(base, { recursive: true, force: true });
}
