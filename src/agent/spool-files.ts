/**
 * The agent's local copies of capture files around blob uploads: ring files kept in the spool
 * folder (`<sessionId>_<n><ext>`, a hard link) until their blob is committed, and their removal,
 * durable, once the journal says they are gone.
 */
import { copyFile, link, mkdir, readdir, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { existingRingFiles } from '../capture/ring-buffer.js';
import { syncFolder } from '../files/durable-file.js';
import type { JournalEntry } from './journal.js';

/**
 * Keeps ring file `index` of a session in the spool folder: a hard link (cheap), or a copy when
 * the spool is on another file system. Returns the spool file's path.
 */
export async function keepInSpool(
  file: string,
  spool: { readonly spoolDir: string; readonly sessionId: string; readonly index: number },
): Promise<string> {
  const kept = path.join(spool.spoolDir, `${spool.sessionId}_${spool.index}${path.extname(file)}`);
  await mkdir(spool.spoolDir, { recursive: true, mode: 0o700 });
  await rm(kept, { force: true });
  try {
    await link(file, kept);
  } catch (err) {
    // The spool is on another file system than the captures: a copy does the same job.
    if ((err as NodeJS.ErrnoException).code !== 'EXDEV') throw err;
    await copyFile(file, kept);
  }
  return kept;
}

/**
 * At start: the local files of a Completed upload with spoolOnly that a crash kept from being
 * removed (between the journal write and the removal).
 */
export async function removeSpooledFiles(entry: JournalEntry, spoolDir: string): Promise<void> {
  const a = entry.assignment;
  if (entry.upload?.state !== 'Completed' || a.blob?.spoolOnly !== true) return;
  const files: string[] = [];
  if (entry.capturePath !== undefined) {
    if (a.continuousCapture) files.push(...(await existingRingFiles(entry.capturePath)));
    else files.push(entry.capturePath);
  }
  for (const name of await readdir(spoolDir).catch(() => [] as string[])) {
    if (spoolIndex(name, a.sessionId) !== undefined) files.push(path.join(spoolDir, name));
  }
  await removeLocalFiles(files);
}

export async function removeLocalFiles(files: readonly string[]): Promise<void> {
  const folders = new Set<string>();
  for (const file of files) {
    if (!(await exists(file))) continue;
    await rm(file, { force: true });
    folders.add(path.dirname(file));
  }
  // Durable, so that a crash cannot bring back a file the journal says is gone.
  for (const folder of folders) await syncFolder(folder);
}

export async function exists(file: string): Promise<boolean> {
  try {
    await stat(file);
    return true;
  } catch {
    return false;
  }
}

/** The n of a ring file `<stem>_<n><ext>`. */
export function ringIndex(file: string): number | undefined {
  const n = /_(\d+)(\.[^./_]*)?$/.exec(path.basename(file))?.[1];
  return n === undefined ? undefined : Number(n);
}

/** The n of this session's spool link `<sessionId>_<n><ext>`. */
export function spoolIndex(name: string, sessionId: string): number | undefined {
  return name.startsWith(`${sessionId}_`) ? ringIndex(name) : undefined;
}
