/**
 * The guard against a real process: a copy of sleep named `tcpdump` (the guard signals only a
 * process of that name), set off by closing its pipe as this process's death would.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { processStartTime, spawnGuard, startTcpdumpGuard } from './tcpdump-guard.js';

let dir: string;
let fakeTcpdump: string;
const started: ChildProcess[] = [];

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'ww-guard-'));
  fakeTcpdump = path.join(dir, 'tcpdump');
  await copyFile('/bin/sleep', fakeTcpdump);
});

afterAll(async () => {
  for (const child of started) if (child.exitCode === null) child.kill('SIGKILL');
  await rm(dir, { recursive: true, force: true });
});

/** A process named tcpdump that runs for 30 s; resolves how it ended. */
function startFake(): { child: ChildProcess; ended: Promise<NodeJS.Signals | null> } {
  const child = spawn(fakeTcpdump, ['30'], { stdio: 'ignore' });
  started.push(child);
  const ended = new Promise<NodeJS.Signals | null>((resolve) =>
    child.once('exit', (_code, signal) => resolve(signal)),
  );
  return { child, ended };
}

function exited(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}

describe('tcpdump guard', () => {
  it('reads a process start time from /proc', () => {
    const { child } = startFake();
    expect(processStartTime(child.pid!)).toMatch(/^\d+$/);
    expect(processStartTime(2 ** 22 + 12345)).toBeUndefined();
    child.kill('SIGKILL');
  });

  it('signals the tcpdump with the start time it was given once its pipe closes', async () => {
    const { child, ended } = startFake();
    const start = processStartTime(child.pid!)!;
    const guard = spawnGuard(child.pid!, start, { delayMs: 100 });
    const guardDone = exited(guard);
    guard.stdin.end();
    expect(await guardDone).toBe(0);
    expect(await ended).toBe('SIGINT');
  });

  it('leaves alone a process with that pid and name but another start time (a reused pid)', async () => {
    const { child, ended } = startFake();
    const start = processStartTime(child.pid!)!;
    const guard = spawnGuard(child.pid!, String(Number(start) + 1), { delayMs: 100 });
    const guardDone = exited(guard);
    guard.stdin.end();
    expect(await guardDone).toBe(0);
    const signal = await Promise.race([
      ended,
      new Promise<'alive'>((resolve) => setTimeout(() => resolve('alive'), 500)),
    ]);
    expect(signal).toBe('alive');
    expect(child.exitCode).toBeNull();
    child.kill('SIGKILL');
  });

  it('released, signals nothing', async () => {
    const { child, ended } = startFake();
    const guard = startTcpdumpGuard(child.pid!, { delayMs: 100 });
    expect(guard).toBeDefined();
    guard!.release();
    const signal = await Promise.race([
      ended,
      new Promise<'alive'>((resolve) => setTimeout(() => resolve('alive'), 800)),
    ]);
    expect(signal).toBe('alive');
    child.kill('SIGKILL');
  });

  it('waits the whole delay even where sleep takes whole seconds only', async () => {
    // A shell whose sleep refuses fractions, as some do: the guard falls back to whole seconds.
    const bin = path.join(dir, 'int-sleep-bin');
    await mkdir(bin, { recursive: true });
    await writeFile(
      path.join(bin, 'sleep'),
      '#!/bin/sh\ncase "$1" in *[!0-9]*) exit 1 ;; esac\nexec /bin/sleep "$1"\n',
      { mode: 0o755 },
    );
    const shell = path.join(dir, 'sh-int-sleep');
    await writeFile(shell, `#!/bin/sh\nPATH=${bin}:$PATH\nexport PATH\nexec /bin/sh "$@"\n`, {
      mode: 0o755,
    });
    const { child, ended } = startFake();
    const start = processStartTime(child.pid!)!;
    const at = Date.now();
    const guard = spawnGuard(child.pid!, start, { delayMs: 300, shell });
    const guardDone = exited(guard);
    guard.stdin.end();
    expect(await guardDone).toBe(0);
    expect(await ended).toBe('SIGINT');
    // 0.3 s rounded up to 1 s, not fired at once.
    expect(Date.now() - at).toBeGreaterThanOrEqual(900);
  });
});
