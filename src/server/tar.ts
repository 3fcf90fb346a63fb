/**
 * A streaming POSIX ustar writer for downloads of several capture files: each file is a 512-byte
 * header and its data padded to 512 bytes, and two zero blocks end the archive. Sizes are known
 * up front, so the archive's length is too (Content-Length), and file data is streamed through
 * with back-pressure, never held whole.
 */
import { Readable } from 'node:stream';

const BLOCK = 512;
/** ustar's name field; longer names would need the prefix field or a pax header. */
export const MAX_TAR_NAME_BYTES = 100;
/** Sizes from 8 GiB on do not fit 11 octal digits and are written in base-256 (GNU, bsdtar). */
const MAX_OCTAL_SIZE = 0o77777777777;

/** One file of an archive. */
export interface TarEntry {
  /**
   * The file's path in the archive: at most 100 bytes of UTF-8, relative, its folders (a
   * scale-set instance's, `web_0/…`) separated by `/`, none empty, `.` or `..`.
   */
  readonly name: string;
  /** Exactly the bytes `open` will yield. */
  readonly size: number;
  readonly mtime: Date;
  /** Permission bits; default 0o644. */
  readonly mode?: number;
  /** The file's bytes; called when the archive reaches the entry. */
  readonly open: () => Promise<AsyncIterable<Buffer>> | AsyncIterable<Buffer>;
}

/** The archive's length in bytes for these entry sizes. */
export function tarSize(entries: readonly Pick<TarEntry, 'size'>[]): number {
  return entries.reduce((sum, e) => sum + BLOCK + padded(e.size), 0) + 2 * BLOCK;
}

/**
 * A ustar archive of the entries as a stream. Entries are opened one after another, each only
 * when the archive reaches it; an entry that yields more or fewer bytes than its size fails the
 * stream (a reader would otherwise get a corrupt archive that looks whole).
 *
 * @throws RangeError (at once) for a name that is empty, longer than 100 bytes or not a plain
 *   relative path, or a size that is not a whole number of bytes.
 */
export function createTarStream(entries: readonly TarEntry[]): Readable {
  const headers = entries.map(header);
  async function* archive(): AsyncGenerator<Buffer> {
    for (const [i, entry] of entries.entries()) {
      yield headers[i]!;
      let written = 0;
      for await (const chunk of await entry.open()) {
        written += chunk.length;
        if (written > entry.size) {
          throw new Error(`${entry.name} is longer than the ${entry.size} bytes announced`);
        }
        yield chunk;
      }
      if (written !== entry.size) {
        throw new Error(`${entry.name} ended after ${written} of ${entry.size} bytes`);
      }
      const padding = padded(entry.size) - entry.size;
      if (padding > 0) yield Buffer.alloc(padding);
    }
    yield Buffer.alloc(2 * BLOCK);
  }
  return Readable.from(archive(), { objectMode: false });
}

function padded(size: number): number {
  return Math.ceil(size / BLOCK) * BLOCK;
}

/** The 512-byte ustar header of an entry (regular file, owner 0:0). */
function header(entry: TarEntry): Buffer {
  const name = Buffer.from(entry.name, 'utf8');
  const parts = entry.name.split('/');
  if (
    name.length === 0 ||
    name.length > MAX_TAR_NAME_BYTES ||
    parts.some((p) => p === '' || p === '.' || p === '..')
  ) {
    throw new RangeError(
      `tar entry name ${JSON.stringify(entry.name)} must be 1 to ${MAX_TAR_NAME_BYTES} bytes, a relative path without empty, '.' or '..' parts`,
    );
  }
  if (!Number.isSafeInteger(entry.size) || entry.size < 0) {
    throw new RangeError(`tar entry ${entry.name}: size ${entry.size} is not a whole byte count`);
  }
  const h = Buffer.alloc(BLOCK);
  name.copy(h, 0);
  octal(h, 100, 8, entry.mode ?? 0o644);
  octal(h, 108, 8, 0); // uid
  octal(h, 116, 8, 0); // gid
  if (entry.size <= MAX_OCTAL_SIZE) {
    octal(h, 124, 12, entry.size);
  } else {
    // base-256: the high bit of the first byte set, the number big-endian in the rest.
    h[124] = 0x80;
    h.writeBigUInt64BE(BigInt(entry.size), 124 + 4);
  }
  octal(h, 136, 12, Math.max(0, Math.floor(entry.mtime.getTime() / 1000)));
  h.write('0', 156, 'ascii'); // typeflag: regular file
  h.write('ustar\0', 257, 'ascii');
  h.write('00', 263, 'ascii');
  // The checksum is the sum of the header's bytes with its own field read as 8 spaces.
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (const byte of h) sum += byte;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'ascii');
  return h;
}

/** A NUL-terminated, zero-padded octal number filling a field of `length` bytes. */
function octal(h: Buffer, offset: number, length: number, value: number): void {
  h.write(`${value.toString(8).padStart(length - 1, '0')}\0`, offset, 'ascii');
}
