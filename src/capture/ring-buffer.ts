import { readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { CaptureFile } from './capture-file.js';

export interface RingBufferOptions {
  /** The configured capture path; files are named `<stem>_<n><ext>` beside it. */
  readonly path: string;
  readonly fileCount: number;
  readonly fileSizeInBytes: number;
  /** The pcap global header every file starts with. */
  readonly header: Buffer;
  /**
   * Called when file `index` (1-based) is complete — at each rotation, before the oldest file
   * may be deleted, and for the last file at close() — and awaited: the agent hard-links the
   * file there so that it outlives the ring until it is uploaded.
   */
  readonly onFileClosed?: (path: string, index: number) => Promise<void> | void;
}

/** Files of an earlier ring with the same configured path, which a new ring would collide with. */
export async function existingRingFiles(base: string): Promise<string[]> {
  const ext = path.extname(base);
  const stem = path.basename(base, ext);
  const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const pattern = new RegExp(`^${escape(stem)}_\\d+${escape(ext)}$`);
  const names = await readdir(path.dirname(base)).catch(() => [] as string[]);
  return names
    .filter((name) => pattern.test(name))
    .map((name) => path.join(path.dirname(base), name));
}

/** Name of the n-th file (1-based) of a ring whose configured path is `base`. */
export function ringFileName(base: string, n: number): string {
  const ext = path.extname(base);
  return path.join(path.dirname(base), `${path.basename(base, ext)}_${n}${ext}`);
}

/**
 * Continuous capture: a ring of at most `fileCount` files of at most `fileSizeInBytes` each.
 * When a record does not fit the current file a new one starts; the oldest file is deleted once
 * there are more than `fileCount`. A single record larger than a whole file still gets a file
 * of its own rather than being cut.
 */
export class RingBuffer {
  #current: CaptureFile | undefined;
  #recordsInCurrent = 0;
  #sequence = 0;
  readonly #files: string[] = [];
  #bytesWritten = 0;

  constructor(private readonly options: RingBufferOptions) {}

  /** The files that exist now, oldest first. */
  get files(): readonly string[] {
    return this.#files;
  }

  /** Bytes written over the whole session, deleted files included. */
  get bytesWritten(): number {
    return this.#bytesWritten;
  }

  /** Bytes the current file can still take before a new one must start. */
  room(): number {
    if (this.#current === undefined) return 0;
    return this.options.fileSizeInBytes - this.#current.size;
  }

  /** True when the current file already holds a record (so rotating makes progress). */
  get hasRecords(): boolean {
    return this.#recordsInCurrent > 0;
  }

  async start(): Promise<void> {
    await this.rotate();
  }

  async append(bytes: Buffer, records: number): Promise<void> {
    if (this.#current === undefined) await this.rotate();
    await this.#current!.append(bytes);
    this.#bytesWritten += bytes.length;
    this.#recordsInCurrent += records;
  }

  /** Closes the current file and starts the next, deleting the oldest beyond fileCount. */
  async rotate(): Promise<void> {
    const finished = this.#current;
    await finished?.close();
    this.#current = undefined;
    if (finished !== undefined) await this.options.onFileClosed?.(finished.path, this.#sequence);
    const name = ringFileName(this.options.path, ++this.#sequence);
    const file = await CaptureFile.create(name);
    try {
      await file.append(this.options.header);
    } catch (err) {
      await file.close().catch(() => undefined);
      await rm(name, { force: true });
      throw err;
    }
    this.#current = file;
    this.#recordsInCurrent = 0;
    this.#bytesWritten += this.options.header.length;
    this.#files.push(name);
    while (this.#files.length > this.options.fileCount) {
      await rm(this.#files.shift()!, { force: true });
    }
  }

  async close(): Promise<void> {
    const current = this.#current;
    this.#current = undefined;
    await current?.close();
    if (current !== undefined) await this.options.onFileClosed?.(current.path, this.#sequence);
  }
}
