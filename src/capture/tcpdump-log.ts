import { open, type FileHandle } from 'node:fs/promises';

/**
 * tcpdump's stderr, kept in a file rather than a pipe: tcpdump must be able to print its final
 * counters and flush its capture even when the process that started it has died (a pipe with
 * no reader would kill it with SIGPIPE first). Only the tail is kept in memory.
 */
export class TcpdumpLog {
  #offset = 0;
  #text = '';
  #closed = false;
  #changedAtMs = 0;

  private constructor(private readonly handle: FileHandle) {}

  static async create(path: string): Promise<TcpdumpLog> {
    return new TcpdumpLog(await open(path, 'w+', 0o600));
  }

  /** The descriptor to give tcpdump as its stderr. */
  get fd(): number {
    return this.handle.fd;
  }

  /** Everything read so far (the last 16 KiB). */
  get text(): string {
    return this.#text;
  }

  /**
   * When tcpdump last wrote, as of the last refresh (the file's mtime, ms since the epoch). The
   * kernel stamps it from a coarse clock, so it never lies after the write.
   */
  get changedAtMs(): number {
    return this.#changedAtMs;
  }

  /** Reads what tcpdump appended since the last call. */
  async refresh(): Promise<string> {
    if (this.#closed) return this.#text;
    const { size, mtimeMs } = await this.handle.stat();
    this.#changedAtMs = mtimeMs;
    if (size > this.#offset) {
      const buf = Buffer.alloc(size - this.#offset);
      const { bytesRead } = await this.handle.read(buf, 0, buf.length, this.#offset);
      this.#offset += bytesRead;
      this.#text = (this.#text + buf.subarray(0, bytesRead).toString('utf8')).slice(-16384);
    }
    return this.#text;
  }

  /** Safe to call twice. */
  async close(): Promise<void> {
    if (this.#closed) return;
    try {
      await this.refresh();
    } finally {
      this.#closed = true;
      await this.handle.close();
    }
  }
}
