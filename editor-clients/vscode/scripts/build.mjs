// Bundles the extension (out/extension.js, vscode external) with esbuild;
// with --tests, bundles test/*.test.ts to out/test/ for node's test runner.
import { build } from "esbuild";
import { readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const tests = process.argv.includes("--tests");
const production = process.argv.includes("--production");

const common = {
  bundle: true,
  platform: "node",
  target: "node18",
  format: "cjs",
  sourcemap: true,
  logLevel: "warning",
  absWorkingDir: root,
};

const extension = {
  ...common,
  entryPoints: ["src/extension.ts"],
  outfile: "out/extension.js",
  external: ["vscode"],
  minify: production,
};

if (tests) {
  // The tests load out/extension.js too (with a stand-in `vscode` module).
  await build(extension);
  const entryPoints = readdirSync(join(root, "test"))
    .filter((f) => f.endsWith(".test.ts"))
    .map((f) => join("test", f));
  await build({ ...common, entryPoints, outdir: "out/test", external: ["vscode"] });
} else {
  await build(extension);
}
