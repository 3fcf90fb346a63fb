/**
 * The command line of a capture's tcpdump: checks of the interface and namespace it names, and
 * the tcpdump, kernel filter and death signal it runs with.
 */
import { access } from 'node:fs/promises';
import { WirewatchError } from '../model/errors.js';
import { compileBpf } from './bpf.js';
import type { CaptureOptions } from './capture-options.js';
import {
  interfaceAddresses,
  isValidInterfaceName,
  isValidNetnsName,
} from './interface-addresses.js';
import { withoutOwnTraffic } from './own-traffic.js';
import { findExecutable, MAX_SNAPLEN, tcpdumpArgs } from './tcpdump.js';

function fail(message: string, target?: string): never {
  throw new WirewatchError('CaptureFailed', message, target === undefined ? {} : { target });
}

/** Rejects (CaptureFailed) an interface or namespace name that is malformed or a namespace that is missing. */
export async function checkCaptureTarget(
  o: Pick<CaptureOptions, 'interface' | 'netns'>,
): Promise<void> {
  if (!isValidInterfaceName(o.interface)) {
    fail(`"${o.interface}" is not an interface name`, 'interface');
  }
  if (o.netns !== undefined) {
    if (!isValidNetnsName(o.netns)) fail(`"${o.netns}" is not a network namespace name`, 'netns');
    await access(`/run/netns/${o.netns}`).catch(() =>
      fail(`network namespace ${o.netns} does not exist`, 'netns'),
    );
  }
}

/** The tcpdump command to run; `shell` is set when a single file's tcpdump gets a guard. */
export interface TcpdumpCommand {
  readonly command: string;
  readonly args: string[];
  readonly shell: string | undefined;
}

/**
 * Finds tcpdump (CaptureFailed when it is missing) and builds its command line for the
 * capture's interface, filters and snaplen (`bytesToCapturePerPacket`, 0 meaning the maximum).
 */
export async function tcpdumpCommand(
  o: CaptureOptions,
  bytesToCapturePerPacket: number,
): Promise<TcpdumpCommand> {
  const tcpdump = await findExecutable(o.tcpdumpPath ?? 'tcpdump');
  if (tcpdump === undefined) {
    fail(
      `tcpdump is not installed (${o.tcpdumpPath ?? 'tcpdump'} not found; apt-get install tcpdump)`,
    );
  }
  const hostAddresses = await interfaceAddresses(o.interface, o.netns);
  const bpf = withoutOwnTraffic(compileBpf(o.filters ?? [], { hostAddresses }), o.ownTraffic);

  const per = bytesToCapturePerPacket;
  const args = tcpdumpArgs({
    iface: o.interface,
    snaplen: per === 0 || per > MAX_SNAPLEN ? MAX_SNAPLEN : per,
    bufferKiB: o.bufferKiB ?? 8192,
    bpf,
  });
  // If this process dies, tcpdump must flush and exit instead of capturing on with nobody to
  // stop it. A single file's tcpdump gets a guard that stops it once the kernel has handed
  // over the packets captured before the death (tcpdump-guard.ts); a ring's tcpdump writes
  // through this process, so `setpriv --pdeathsig INT` stops it at once (as it does a single
  // file's when there is no shell for the guard).
  const shell = o.ring === undefined ? await findExecutable('/bin/sh') : undefined;
  const setpriv = shell === undefined ? await findExecutable('setpriv') : undefined;
  const capture = [
    ...(setpriv === undefined ? [] : [setpriv, '--pdeathsig', 'INT']),
    tcpdump,
    ...args,
  ];
  const [command, ...commandArgs] =
    o.netns === undefined ? capture : ['ip', 'netns', 'exec', o.netns, ...capture];
  return { command: command!, args: commandArgs, shell };
}
