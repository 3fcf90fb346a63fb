import { describe, expect, it } from 'vitest';
import { WirewatchError } from '../model/errors.js';
import { TcpdumpProcess } from './tcpdump-process.js';

// A stand-in for tcpdump: a shell that says what tcpdump says on stderr.
function start(process: TcpdumpProcess, script: string, startTimeoutMs = 5_000): Promise<void> {
  return process.start({
    command: '/bin/sh',
    args: ['-c', script],
    stdout: 'pipe',
    startTimeoutMs,
    interface: 'eth0',
    netns: undefined,
  });
}

describe('TcpdumpProcess', () => {
  it('resolves once it listens and records how it exited', async () => {
    const tcpdump = await TcpdumpProcess.create();
    try {
      await start(
        tcpdump,
        'echo "listening on eth0" >&2; sleep 0.1; echo "3 packets captured" >&2; exit 3',
      );
      const exit = await tcpdump.exitRecord();
      await tcpdump.log.refresh();
      expect(exit.code).toBe(3);
      expect(exit.signal).toBeNull();
      expect(exit.durationMs).toBeGreaterThanOrEqual(0);
      expect(tcpdump.log.text).toContain('3 packets captured');
    } finally {
      await tcpdump.close();
      await tcpdump.close(); // twice is fine
    }
  });

  it('records a signal as the signal', async () => {
    const tcpdump = await TcpdumpProcess.create();
    try {
      await start(tcpdump, 'echo "listening on eth0" >&2; exec sleep 10');
      tcpdump.child!.kill('SIGKILL');
      const exit = await tcpdump.exitRecord();
      expect(exit.code).toBeNull();
      expect(exit.signal).toBe('SIGKILL');
    } finally {
      await tcpdump.close();
    }
  });

  it('rejects with CaptureFailed when it exits before listening', async () => {
    const tcpdump = await TcpdumpProcess.create();
    try {
      const error = await start(tcpdump, 'echo "eth0: No such device exists" >&2; exit 1').catch(
        (err: unknown) => err,
      );
      expect(error).toBeInstanceOf(WirewatchError);
      expect((error as WirewatchError).code).toBe('CaptureFailed');
      expect((await tcpdump.exitRecord()).stderrTail).toContain('No such device');
    } finally {
      await tcpdump.close();
    }
  });

  it('kills it and rejects when it does not listen in time', async () => {
    const tcpdump = await TcpdumpProcess.create();
    try {
      await expect(start(tcpdump, 'exec sleep 10', 100)).rejects.toThrow(
        'tcpdump did not start within 100 ms',
      );
      expect((await tcpdump.exitRecord()).signal).toBe('SIGKILL');
    } finally {
      await tcpdump.close();
    }
  });
});
