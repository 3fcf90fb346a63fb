import { execFile } from 'node:child_process';
import { constants } from 'node:fs';
import { access } from 'node:fs/promises';
import { promisify } from 'node:util';
import { WirewatchError } from '../model/errors.js';
import type { HostAddress } from './filter-spec.js';
import { parseIpAddress } from './ip.js';

const execFileAsync = promisify(execFile);

interface IpAddrJson {
  readonly addr_info?: readonly { readonly family?: string; readonly local?: string }[];
}

/** Linux interface names: 1..15 bytes, no '/', no whitespace, not "." or "..". */
export function isValidInterfaceName(name: string): boolean {
  return /^[^\s/:]{1,15}$/.test(name) && name !== '.' && name !== '..';
}

/** Network namespace names as `ip netns` keeps them under /run/netns. */
export function isValidNetnsName(name: string): boolean {
  return /^[A-Za-z0-9_.-]{1,64}$/.test(name) && name !== '.' && name !== '..';
}

/**
 * Checks, before anything starts, that an interface a user named on the command line exists on
 * this host (or in network namespace `netns`): one error for `wirewatch up --interface` and
 * `wirewatch capture-local -i`, so both say the same. A namespace that does not exist is left to
 * the capture, which names it.
 *
 * @throws WirewatchError `InvalidCommandLine` for a name no interface can have,
 *   `InterfaceNotFound` for one this host (or the namespace) does not have.
 */
export async function checkInterfaceExists(
  iface: string,
  netns?: string,
  ipPath = 'ip',
): Promise<void> {
  const target = '--interface';
  if (!isValidInterfaceName(iface)) {
    throw new WirewatchError(
      'InvalidCommandLine',
      `--interface ${JSON.stringify(iface)} is not an interface name`,
      { target },
    );
  }
  let missing: boolean;
  if (netns === undefined) {
    missing = await access(`/sys/class/net/${iface}`, constants.F_OK).then(
      () => false,
      () => true,
    );
  } else {
    missing = await execFileAsync(ipPath, ['-n', netns, 'link', 'show', 'dev', iface], {
      timeout: 10_000,
    }).then(
      () => false,
      (cause: { stderr?: unknown }) =>
        typeof cause.stderr === 'string' && /does not exist/.test(cause.stderr),
    );
  }
  if (missing) {
    const where =
      netns === undefined
        ? 'this host has no such interface (see: ip link)'
        : `network namespace ${netns} has no such interface (see: ip -n ${netns} link)`;
    throw new WirewatchError('InterfaceNotFound', `--interface ${iface}: ${where}`, { target });
  }
}

/**
 * The addresses configured on a capture interface (IPv4 and IPv6, link-local included): the
 * host's own side of every packet, which tells outbound from inbound for Azure's local/remote
 * filter fields.
 */
export async function interfaceAddresses(
  iface: string,
  netns?: string,
  ipPath = 'ip',
): Promise<HostAddress[]> {
  const args = [...(netns === undefined ? [] : ['-n', netns]), '-j', 'addr', 'show', 'dev', iface];
  let stdout: string;
  try {
    ({ stdout } = await execFileAsync(ipPath, args, { timeout: 10_000 }));
  } catch (cause) {
    const raw = (cause as { stderr?: unknown }).stderr;
    const stderr = typeof raw === 'string' ? raw : '';
    const where = netns === undefined ? '' : ` in network namespace ${netns}`;
    const why = /does not exist/.test(stderr)
      ? `interface ${iface} does not exist${where}`
      : /network namespace/.test(stderr)
        ? `network namespace ${netns ?? ''} does not exist`
        : `cannot read the addresses of ${iface}${where}: ${stderr.trim() || String(cause)}`;
    throw new WirewatchError('CaptureFailed', why, { target: 'interface', cause });
  }
  const parsed = JSON.parse(stdout) as readonly IpAddrJson[];
  const addresses: HostAddress[] = [];
  for (const link of parsed) {
    for (const info of link.addr_info ?? []) {
      if ((info.family === 'inet' || info.family === 'inet6') && info.local !== undefined) {
        const address = parseIpAddress(info.local);
        if (address !== undefined) addresses.push(address);
      }
    }
  }
  return addresses;
}
