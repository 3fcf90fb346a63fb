/**
 * Which of the agent's own connections a capture leaves out: the remote endpoints the agent
 * talks to (the server of its channel, the blob endpoints of its uploads), resolved to
 * addresses, each with the agent's address towards it, and the pool its connections are bound
 * to (own-ports.ts). The kernel filter built from this is in src/capture/own-traffic.ts.
 */
import { createSocket } from 'node:dgram';
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import type { PortRange } from '../capture/filter-spec.js';
import { tryParseIpAddress, type IpAddress } from '../capture/ip.js';
import type { OwnFlow, OwnTraffic } from '../capture/own-traffic.js';

/** A remote endpoint: a host name or address, and a TCP port. */
export interface Endpoint {
  readonly host: string;
  readonly port: number;
}

/** The endpoint an http(s), ws(s) URL connects to; undefined for anything else. */
export function endpointOf(url: string): Endpoint | undefined {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return undefined;
  }
  const secure = parsed.protocol === 'https:' || parsed.protocol === 'wss:';
  if (!secure && parsed.protocol !== 'http:' && parsed.protocol !== 'ws:') return undefined;
  const host = parsed.hostname.replace(/^\[(.*)\]$/, '$1');
  return { host, port: parsed.port === '' ? (secure ? 443 : 80) : Number(parsed.port) };
}

/**
 * The own traffic to leave out for these endpoints: every address each host resolves to, with
 * the local address the kernel would send from (asked with a connected UDP socket, which sends
 * nothing). An endpoint that cannot be resolved or routed is left out (and so captured).
 */
export async function resolveOwnTraffic(
  localPorts: PortRange,
  endpoints: readonly Endpoint[],
): Promise<OwnTraffic> {
  const flows: OwnFlow[] = [];
  const seen = new Set<string>();
  for (const { host, port } of endpoints) {
    for (const address of await addressesOf(host)) {
      const key = `${address} ${port}`;
      if (seen.has(key)) continue;
      seen.add(key);
      const remote = parseAddress(address);
      const localText = await localAddressTowards(address, port);
      const local = localText === undefined ? undefined : parseAddress(localText);
      if (remote !== undefined && local !== undefined) {
        flows.push({ local, remote, remotePort: port });
      }
    }
  }
  return { localPorts, flows };
}

async function addressesOf(host: string): Promise<string[]> {
  if (isIP(host) !== 0) return [host];
  try {
    return (await lookup(host, { all: true })).map((a) => a.address);
  } catch {
    return [];
  }
}

/** The local address the kernel picks to reach address:port; undefined when there is no route. */
function localAddressTowards(address: string, port: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const socket = createSocket(isIP(address) === 6 ? 'udp6' : 'udp4');
    const done = (value: string | undefined) => {
      socket.close();
      resolve(value);
    };
    socket.once('error', () => done(undefined));
    socket.connect(port, address, () => {
      try {
        done(socket.address().address);
      } catch {
        done(undefined);
      }
    });
  });
}

/** A socket's address as a typed value; an IPv4-mapped IPv6 address is the IPv4 one on the wire. */
function parseAddress(text: string): IpAddress | undefined {
  const plain = text.replace(/%.*$/, '').replace(/^::ffff:(\d+\.\d+\.\d+\.\d+)$/i, '$1');
  const parsed = tryParseIpAddress(plain);
  return parsed.ok ? parsed.value : undefined;
}
