/**
 * The agent's own connections, left out of every capture by default (docs/agent.md, "The agent
 * does not capture itself"). The agent binds each connection it makes (its channel to the
 * server, its blob uploads) to a port of a small pool outside the kernel's ephemeral range, so
 * that one kernel filter term per remote endpoint names exactly those connections — including
 * the ones opened after tcpdump has started (a channel reconnect, the next upload request).
 *
 * Like bpf.ts, the text is built only from typed values (addresses as bigints, ports as
 * numbers), never from strings read from a socket or a URL.
 */
import { BPF_MATCH_NOTHING } from './bpf.js';
import type { PortRange } from './filter-spec.js';
import { compareIpAddresses, formatIp, type IpAddress } from './ip.js';

/** One remote endpoint the agent talks to, and the agent's address towards it. */
export interface OwnFlow {
  /** The agent's address on the connections to `remote` (what the kernel routes from). */
  readonly local: IpAddress;
  readonly remote: IpAddress;
  readonly remotePort: number;
}

/** What a capture leaves out: TCP between `local` : `localPorts` and each flow's remote. */
export interface OwnTraffic {
  /** The pool every own connection is bound to. */
  readonly localPorts: PortRange;
  readonly flows: readonly OwnFlow[];
}

/**
 * The pcap-filter expression that matches the agent's own connections, both directions; `''`
 * when there is none to leave out. For each flow (L = local, R:r = remote, P = the pool):
 * `(ip src host L and src portrange P and ip dst host R and dst port r) or (ip src host R and
 * src port r and ip dst host L and dst portrange P)`, all under one `tcp and`.
 */
export function ownTrafficExpression(own: OwnTraffic): string {
  const ports = portTerm(own.localPorts);
  const seen = new Set<string>();
  const terms: string[] = [];
  for (const flow of sorted(own.flows)) {
    if (flow.local.family !== flow.remote.family) continue;
    const proto = flow.local.family === 4 ? 'ip' : 'ip6';
    const local = formatIp(flow.local.family, flow.local.value);
    const remote = formatIp(flow.remote.family, flow.remote.value);
    const key = `${local} ${remote} ${flow.remotePort}`;
    if (seen.has(key)) continue;
    seen.add(key);
    terms.push(
      `(${proto} src host ${local} and src ${ports} and ${proto} dst host ${remote} and dst port ${flow.remotePort})`,
      `(${proto} src host ${remote} and src port ${flow.remotePort} and ${proto} dst host ${local} and dst ${ports})`,
    );
  }
  return terms.length === 0 ? '' : `tcp and (${terms.join(' or ')})`;
}

/**
 * A capture's filter (compileBpf's output; `''` = everything) without the agent's own
 * connections. `own` undefined (the capture includes them) leaves the filter as it is.
 */
export function withoutOwnTraffic(bpf: string, own: OwnTraffic | undefined): string {
  const exclusion = own === undefined ? '' : ownTrafficExpression(own);
  if (exclusion === '' || bpf === BPF_MATCH_NOTHING) return bpf;
  // pcap-filter gives `and` and `or` one precedence: both sides are parenthesized.
  return bpf === '' ? `not (${exclusion})` : `(${bpf}) and not (${exclusion})`;
}

function portTerm(range: PortRange): string {
  return range.first === range.last
    ? `port ${range.first}`
    : `portrange ${range.first}-${range.last}`;
}

/** Flows in a stable order, so that the same endpoints always give the same text. */
function sorted(flows: readonly OwnFlow[]): OwnFlow[] {
  return [...flows].sort(
    (a, b) =>
      compareIpAddresses(a.remote, b.remote) ||
      a.remotePort - b.remotePort ||
      compareIpAddresses(a.local, b.local),
  );
}
