import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import {
  explainTcpdumpFailure,
  outputWriteState,
  parseTcpdumpStats,
  tcpdumpArgs,
} from './tcpdump.js';

describe('tcpdump', () => {
  it('reads the counters of SIGUSR1 and of the exit, newest last', () => {
    const stderr = [
      'tcpdump: listening on eth0, link-type EN10MB (Ethernet), snapshot length 262144 bytes',
      'tcpdump: 5 packets captured, 6 packets received by filter, 1 packet dropped by kernel',
      '12 packets captured',
      '13 packets received by filter',
      '2 packets dropped by kernel',
      '',
    ].join('\n');
    expect(parseTcpdumpStats(stderr)).toEqual({
      captured: 12,
      receivedByFilter: 13,
      droppedByKernel: 2,
      droppedByInterface: 0,
    });
    expect(parseTcpdumpStats('tcpdump: listening on eth0')).toBeUndefined();
  });

  it('explains start failures', () => {
    expect(explainTcpdumpFailure('tcpdump: x0: No such device exists\n', 'x0', 'ns1')).toBe(
      'interface x0 does not exist in network namespace ns1',
    );
    expect(explainTcpdumpFailure('tcpdump: lo: That device is not up', 'lo')).toBe(
      'interface lo is down',
    );
    expect(
      explainTcpdumpFailure("tcpdump: lo: You don't have permission to perform this capture", 'lo'),
    ).toMatch(/^permission denied/);
    expect(
      explainTcpdumpFailure('Cannot open network namespace "n": No such file', 'lo', 'n'),
    ).toBe('network namespace n does not exist');
  });

  it('passes the filter as one argument after --', () => {
    expect(
      tcpdumpArgs({ iface: 'eth0', snaplen: 96, bufferKiB: 4096, bpf: 'tcp and port 80' }),
    ).toEqual([
      '-i',
      'eth0',
      '-n',
      '-Z',
      'root',
      '-w',
      '-',
      '-s',
      '96',
      '-B',
      '4096',
      '--',
      'tcp and port 80',
    ]);
    expect(tcpdumpArgs({ iface: 'eth0', snaplen: 96, bufferKiB: 4096, bpf: '' })).not.toContain(
      '--',
    );
  });

  it.skipIf(process.platform !== 'linux' || !['x64', 'arm64'].includes(process.arch))(
    'tells a process stopped inside a write to its output from one waiting in another call and one running its own code',
    async () => {
      // `yes` into a pipe nobody reads blocks in write(1, …); `sleep` waits in nanosleep; the
      // shell's empty loop runs its own code.
      const writer = spawn('yes', [], { stdio: ['ignore', 'pipe', 'ignore'] });
      const sleeper = spawn('sleep', ['30'], { stdio: 'ignore' });
      const spinner = spawn('sh', ['-c', 'while :; do :; done'], { stdio: 'ignore' });
      try {
        await new Promise((resolve) => setTimeout(resolve, 300));
        expect(outputWriteState(sleeper.pid!, 0)).toBe('not-stopped');
        writer.kill('SIGSTOP');
        sleeper.kill('SIGSTOP');
        spinner.kill('SIGSTOP');
        expect(outputWriteState(writer.pid!, 2000)).toBe('writing');
        expect(outputWriteState(sleeper.pid!, 2000)).toBe('waiting');
        expect(outputWriteState(spinner.pid!, 2000)).toBe('running');
        expect(outputWriteState(2 ** 22 + 1)).toBe('unknown');
      } finally {
        writer.kill('SIGKILL');
        sleeper.kill('SIGKILL');
        spinner.kill('SIGKILL');
      }
    },
  );
});
