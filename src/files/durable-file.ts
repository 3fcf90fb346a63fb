/**
 * Files that must survive a crash or a power cut whole (the agent's journal and identity, the
 * server's TLS material and secrets key), and reading one that may not be there.
 */
import { randomBytes } from 'node:crypto';
import { open, readFile, rename, rm } from 'node:fs/promises';
import path from 'node:path';

/**
 * Replaces a file atomically and durably: the content goes to a temporary file beside it,
 * which is fsynced and renamed over the target, and then the folder is fsynced so that the
 * rename itself survives a crash. A reader (or a restarted agent) sees the old or the new
 * content, never a mix.
 */
export async function writeFileDurably(
  file: string,
  content: string,
  options: { readonly mode?: number } = {},
): Promise<void> {
  const temp = `${file}.tmp-${randomBytes(6).toString('hex')}`;
  const handle = await open(temp, 'wx', options.mode ?? 0o600);
  try {
    try {
      await handle.writeFile(content);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, file);
  } catch (err) {
    await rm(temp, { force: true }).catch(() => undefined);
    throw err;
  }
  await syncFolder(path.dirname(file));
}

/** Removes a file and makes the removal durable. */
export async function removeFileDurably(file: string): Promise<void> {
  await rm(file, { force: true });
  await syncFolder(path.dirname(file));
}

/** fsyncs a folder, so that renames and removals in it reach the disk. */
export async function syncFolder(folder: string): Promise<void> {
  const handle = await open(folder, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** True for the temporary files {@link writeFileDurably} leaves behind when a crash interrupts it. */
export function isDurableTempFile(name: string): boolean {
  return /\.tmp-[0-9a-f]{12}$/.test(name);
}

/**
 * Creates `file` (failing if it exists) with exactly `mode` and `data`, flushed to disk before
 * returning, so that a rename or a folder sync that survives a power cut never points at an
 * empty file.
 */
export async function writeNewFileSynced(file: string, data: Buffer, mode: number): Promise<void> {
  const handle = await open(file, 'wx', mode);
  try {
    // open's mode is filtered by the umask.
    await handle.chmod(mode);
    await handle.writeFile(data);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * A file's content; undefined when there is no such file. Anything but absence (EACCES,
 * EISDIR …) is thrown: it is the operator's to fix, not the caller's to overwrite.
 */
export async function readIfExists(file: string): Promise<Buffer | undefined>;
export async function readIfExists(file: string, encoding: 'utf8'): Promise<string | undefined>;
export async function readIfExists(
  file: string,
  encoding?: 'utf8',
): Promise<Buffer | string | undefined> {
  try {
    return encoding === undefined ? await readFile(file) : await readFile(file, encoding);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}
