/**
 * The test lab: network namespaces joined by veth pairs, with addresses only in 10.77.0.0/16 and
 * fd77::/64 inside those namespaces. Nothing here touches the machine's own interfaces; every
 * namespace is removed by `close()`, which tests call in `finally`/`afterAll`.
 */
import { randomInt } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { run } from './exec.js';

export interface LabHost {
  /** The network namespace's name. */
  readonly netns: string;
  /** The lab interface inside the namespace. */
  readonly iface: string;
  readonly ipv4: string;
  readonly ipv6: string;
}

export interface Lab {
  readonly a: LabHost;
  readonly b: LabHost;
  /** Runs a command inside a host's namespace. */
  exec(host: LabHost, file: string, args: readonly string[]): ReturnType<typeof run>;
  close(): Promise<void>;
}

let sequence = 0;

/** Creates two hosts, `a` and `b`, joined by one veth pair, with IPv4 and IPv6 addresses. */
export async function createLab(): Promise<Lab> {
  const id = `${process.pid % 100000}-${++sequence}`;
  const subnet = randomInt(1, 255);
  const hex = subnet.toString(16);
  const a: LabHost = {
    netns: `ww-${id}-a`,
    iface: 'wwa0',
    ipv4: `10.77.${subnet}.1`,
    ipv6: `fd77::${hex}:1`,
  };
  const b: LabHost = {
    netns: `ww-${id}-b`,
    iface: 'wwb0',
    ipv4: `10.77.${subnet}.2`,
    ipv6: `fd77::${hex}:2`,
  };
  const created: string[] = [];
  const close = async (): Promise<void> => {
    // Deleting a namespace also deletes the veth end inside it (and so its peer). Processes a
    // failed test left inside (tcpdump, traffic) are killed first.
    for (const ns of created.splice(0)) {
      const { stdout } = await run('ip', ['netns', 'pids', ns], { check: false });
      for (const pid of stdout.split(/\s+/).filter(Boolean)) {
        try {
          process.kill(Number(pid), 'SIGKILL');
        } catch {
          // already gone
        }
      }
      await run('ip', ['netns', 'delete', ns], { check: false });
    }
  };
  try {
    for (const host of [a, b]) {
      await run('ip', ['netns', 'add', host.netns]);
      created.push(host.netns);
    }
    await run('ip', [
      'link',
      'add',
      a.iface,
      'netns',
      a.netns,
      'type',
      'veth',
      'peer',
      'name',
      b.iface,
      'netns',
      b.netns,
    ]);
    for (const host of [a, b]) {
      const ipns = (args: string[]) => run('ip', ['-n', host.netns, ...args]);
      await ipns(['addr', 'add', `${host.ipv4}/24`, 'dev', host.iface]);
      await ipns(['-6', 'addr', 'add', `${host.ipv6}/64`, 'dev', host.iface, 'nodad']);
      await ipns(['link', 'set', host.iface, 'up']);
      await ipns(['link', 'set', 'lo', 'up']);
      // Keep the lab quiet: no router solicitations or other IPv6 chatter that would make
      // packet counts in captures depend on timing.
      await run('ip', [
        'netns',
        'exec',
        host.netns,
        'sysctl',
        '-q',
        '-w',
        `net.ipv6.conf.${host.iface}.router_solicitations=0`,
      ]);
    }
    // Static neighbours: no ARP or neighbour discovery, so captures hold only what tests send.
    const macs = new Map<LabHost, string>();
    for (const host of [a, b]) {
      const { stdout } = await run('ip', [
        '-n',
        host.netns,
        '-j',
        'link',
        'show',
        'dev',
        host.iface,
      ]);
      const [link] = JSON.parse(stdout) as { address: string }[];
      macs.set(host, link!.address);
    }
    for (const [host, peer] of [
      [a, b],
      [b, a],
    ] as const) {
      for (const address of [peer.ipv4, peer.ipv6]) {
        await run('ip', [
          '-n',
          host.netns,
          'neigh',
          'replace',
          address,
          'lladdr',
          macs.get(peer)!,
          'dev',
          host.iface,
          'nud',
          'permanent',
        ]);
      }
    }
  } catch (err) {
    await close();
    throw err;
  }
  return {
    a,
    b,
    exec: (host, file, args) => run('ip', ['netns', 'exec', host.netns, file, ...args]),
    close,
  };
}

/**
 * Process ids of the tcpdumps running in a host's namespace (every lab's interfaces have the
 * same names, so a match on the command line would see other tests' captures).
 */
export async function tcpdumpsIn(host: LabHost): Promise<number[]> {
  const { stdout } = await run('ip', ['netns', 'pids', host.netns], { check: false });
  const found: number[] = [];
  for (const pid of stdout.split(/\s+/).filter(Boolean)) {
    const comm = await readFile(`/proc/${pid}/comm`, 'utf8').catch(() => '');
    if (comm.trim() === 'tcpdump') found.push(Number(pid));
  }
  return found;
}
