import { randomBytes } from 'node:crypto';
import { open, rename, rm } from 'node:fs/promises';
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
