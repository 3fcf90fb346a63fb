/**
 * One agent per data dir, across processes and within one: a lock file naming its owner by pid
 * and process start time.
 */
import { constants } from 'node:fs';
import { open, readFile, rm } from 'node:fs/promises';
import path from 'node:path';

/** Data dirs locked by agents of this process. */
const lockedHere = new Set<string>();

/**
 * One agent per data dir: a second one would mark the first one's captures AgentRestarted and
 * write the same journal. The lock file names its owner by pid and process start time, so a
 * lock left by a crash is taken over even when a new process got the same pid (a container's
 * pid 1 is the agent on every restart).
 */
export async function lockDataDir(dataDir: string): Promise<() => Promise<void>> {
  const key = path.resolve(dataDir);
  if (lockedHere.has(key)) throw new Error(`an agent in this process is already using ${dataDir}`);
  const file = path.join(dataDir, 'agent.lock');
  const me = `${process.pid} ${await processStartTime(process.pid)}`;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const handle = await open(
        file,
        constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
        0o600,
      );
      try {
        await handle.writeFile(`${me}\n`);
      } finally {
        await handle.close();
      }
      lockedHere.add(key);
      let released = false;
      return async () => {
        if (released) return;
        released = true;
        lockedHere.delete(key);
        await rm(file, { force: true });
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const [pid, started] = (await readFile(file, 'utf8').catch(() => '')).trim().split(' ');
    const owner = Number(pid);
    if (
      Number.isInteger(owner) &&
      owner > 0 &&
      `${owner} ${started}` !== me &&
      (await processStartTime(owner)) === started
    ) {
      throw new Error(`another agent (pid ${owner}) is using ${dataDir}`);
    }
    // The owner is gone: the lock is stale.
    await rm(file, { force: true });
  }
  throw new Error(`cannot lock ${dataDir}`);
}

/** A process's start time in clock ticks since boot (/proc/PID/stat field 22); '' if none. */
async function processStartTime(pid: number): Promise<string> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name, which may itself contain spaces and parentheses.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[19] ?? '';
  } catch {
    return '';
  }
}
