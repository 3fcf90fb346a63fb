import { constants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { WirewatchError } from '../model/errors.js';

/**
 * One pcap file being written. It only ever receives whole records, and when a write fails
 * (disk full, I/O error) it cuts the file back to the last whole record, so what is on disk is
 * always a pcap file that tshark reads.
 */
export class CaptureFile {
  #size = 0;
  #closed = false;

  private constructor(
    readonly path: string,
    private readonly handle: FileHandle,
  ) {}

  /** Creates the empty file: never overwrites, never follows a symlink. */
  static async create(filePath: string): Promise<CaptureFile> {
    let handle: FileHandle;
    try {
      handle = await open(
        filePath,
        constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
        0o640,
      );
    } catch (cause) {
      const code = (cause as NodeJS.ErrnoException).code;
      const why = code === 'EEXIST' ? 'it already exists' : describe(cause);
      throw new WirewatchError('LocalFileFailed', `cannot create ${filePath}: ${why}`, { cause });
    }
    return new CaptureFile(filePath, handle);
  }

  get size(): number {
    return this.#size;
  }

  /** The descriptor, for a writer in another process (tcpdump's stdout). */
  get fd(): number {
    return this.handle.fd;
  }

  /** Re-reads the size from the disk, for a file another process writes to. */
  async refreshSize(): Promise<number> {
    if (!this.#closed) this.#size = (await this.handle.stat()).size;
    return this.#size;
  }

  /** Appends whole records; on failure the file is cut back to its previous size. */
  async append(bytes: Buffer): Promise<void> {
    let written = 0;
    try {
      while (written < bytes.length) {
        const { bytesWritten } = await this.handle.write(bytes, written, bytes.length - written);
        written += bytesWritten;
      }
      this.#size += bytes.length;
    } catch (cause) {
      await this.handle.truncate(this.#size).catch(() => undefined);
      throw new WirewatchError(
        'LocalFileFailed',
        `writing ${path.basename(this.path)} failed: ${describe(cause)}`,
        { cause },
      );
    }
  }

  /** Flushes to disk and closes; safe to call twice. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    try {
      await this.handle.sync();
    } finally {
      await this.handle.close();
    }
  }
}

function describe(cause: unknown): string {
  const code = (cause as NodeJS.ErrnoException).code;
  if (code === 'ENOSPC') return 'no space left on device';
  if (code === 'EDQUOT') return 'disk quota exceeded';
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied';
  return cause instanceof Error ? cause.message : String(cause);
}
