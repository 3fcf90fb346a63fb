/**
 * What the agent remembers of a session after the server has acknowledged its end and the
 * journal has forgotten it: the capture files it wrote, in `<data dir>/written/<sessionId>.json`.
 * Downloads of a capture whose only copy is on this host are served from these files and no
 * others (src/agent/file-reader.ts), so a download can never name a file the agent did not write
 * for that session — another capture's, or anything else under the capture root.
 *
 * A record goes once none of its files is left (checked when the agent starts).
 */
import { mkdir, readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { Type } from 'typebox';
import { Compile } from 'typebox/compile';
import type { AgentLog } from './agent-log.js';
import { isDurableTempFile, removeFileDurably, writeFileDurably } from '../files/durable-file.js';

const RecordSchema = Type.Object({ files: Type.Array(Type.String()) });
const recordCheck = Compile(RecordSchema);
const recordFile = /^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\.json$/i;

export interface WrittenFilesOptions {
  /** The agent's data dir; the records live in its `written/` folder. */
  readonly dataDir: string;
  readonly log: AgentLog;
}

/** Opens the record of written files: creates its folder and drops records of vanished files. */
export async function openWrittenFiles(options: WrittenFilesOptions): Promise<WrittenFiles> {
  const written = new WrittenFiles(path.join(options.dataDir, 'written'), options.log);
  await written.prune();
  return written;
}

export class WrittenFiles {
  readonly #folder: string;
  readonly #log: AgentLog;
  /** Records of this process, known before their write has reached the disk. */
  readonly #recent = new Map<string, readonly string[]>();

  constructor(folder: string, log: AgentLog) {
    this.#folder = folder;
    this.#log = log;
  }

  /** Remembers the files a session wrote (nothing is written for a session without files). */
  async record(sessionId: string, files: readonly string[]): Promise<void> {
    const file = this.#fileOf(sessionId);
    if (file === undefined || files.length === 0) return;
    this.#recent.set(sessionId, [...files]);
    await mkdir(this.#folder, { recursive: true, mode: 0o700 });
    await writeFileDurably(file, JSON.stringify({ files }) + '\n');
    // On disk now: memory need not hold it (a later record of the session replaces both).
    if (this.#recent.get(sessionId)?.length === files.length) this.#recent.delete(sessionId);
  }

  /** The files a forgotten session wrote; [] when the agent has no record of it. */
  async get(sessionId: string): Promise<string[]> {
    const recent = this.#recent.get(sessionId);
    if (recent !== undefined) return [...recent];
    const file = this.#fileOf(sessionId);
    if (file === undefined) return [];
    let value: unknown;
    try {
      value = JSON.parse(await readFile(file, 'utf8'));
    } catch {
      return [];
    }
    return recordCheck.Check(value) ? value.files : [];
  }

  /** Removes temp files a crash left and the records none of whose files exist any more. */
  async prune(): Promise<void> {
    await mkdir(this.#folder, { recursive: true, mode: 0o700 });
    for (const name of await readdir(this.#folder)) {
      const file = path.join(this.#folder, name);
      const id = recordFile.exec(name)?.[1];
      if (isDurableTempFile(name)) {
        await removeFileDurably(file).catch(() => undefined);
        continue;
      }
      if (id === undefined) continue;
      const files = await this.get(id);
      const left = await Promise.all(
        files.map((f) =>
          stat(f).then(
            () => true,
            () => false,
          ),
        ),
      );
      if (!left.includes(true)) {
        await removeFileDurably(file).catch((err: unknown) =>
          this.#log('warn', 'cannot remove a record of written files', { file, error: err }),
        );
      }
    }
  }

  /** The record's path; undefined for anything that is not a session id (never a path). */
  #fileOf(sessionId: string): string | undefined {
    const name = `${sessionId}.json`;
    return recordFile.test(name) ? path.join(this.#folder, name) : undefined;
  }
}
