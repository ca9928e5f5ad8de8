/**
 * An EditTarget on the local file system (node `fs`, no `vscode` import): how the
 * node tests play the editor's part when the server sends `workspace/applyEdit`.
 */

import { promises as fs } from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";

import { EditError, EditTarget, FileSnapshot } from "./edits";

function toPath(uri: string): string {
  if (!uri.startsWith("file:")) throw new EditError(`not a file URI: ${uri}`, uri);
  return fileURLToPath(uri);
}

export const nodeEditTarget: EditTarget = {
  async read(uri: string): Promise<FileSnapshot> {
    try {
      return { text: await fs.readFile(toPath(uri), "utf8") };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return { text: undefined };
      throw err;
    }
  },
  async write(uri: string, text: string): Promise<void> {
    const file = toPath(uri);
    await fs.mkdir(path.dirname(file), { recursive: true });
    await fs.writeFile(file, text, "utf8");
  },
  async remove(uri: string): Promise<void> {
    await fs.rm(toPath(uri), { force: true });
  },
};
