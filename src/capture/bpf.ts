/**
 * Compiles parsed filters into a pcap-filter(7) expression for tcpdump. The text is built
 * only from the typed model — numbers and addresses formatted by ip.ts — never from user
 * strings. match.ts is the userland twin and must keep exactly the same semantics.
 *
 * Semantics (Azure's): filters are OR-ed, fields of one filter AND-ed. "Local" is the
 * capturing host's side: an outbound packet has src = local, an inbound one dst = local, so
 * a filter with any address or port field is (protocol) and ((outbound match) or (inbound
 * match)). Which side is local is decided, in order, by the filter's localIPAddress set, else
 * by the host's addresses on the capture interface, else (no host addresses known) by the
 * kernel's packet direction (`outbound` / `inbound`, Linux live captures only).
 *
 * No `vlan` keyword is emitted. On a live Linux capture the kernel usually holds 802.1Q tags
 * in packet metadata (VLAN acceleration, hardware or software) when the filter runs, so
 * tagged traffic is filtered by its IP packet; a tag left inline (e.g. `ethtool -K … txvlan
 * off`, libpcap issue #1317) or a saved file makes these expressions skip the frame.
 * match.ts follows the common live case.
 */
import type { FilterSpec, HostAddress, IpFamily, PortSet } from './filter-spec.js';
import { families } from './filter.js';
import type { Cidr } from './ip.js';
import { formatIp, rangeToCidrs, familyBits } from './ip.js';

export interface CompileBpfOptions {
  /** The addresses of the capturing host on the capture interface; may be empty. */
  readonly hostAddresses: readonly HostAddress[];
}

/**
 * An expression no packet matches, for a non-empty filter list none of whose filters can
 * match on this host (e.g. only IPv6 remotes on a host without IPv6 addresses). tcpdump
 * refuses expressions its optimizer proves empty ("ip and ip6"), so this tests the wire
 * length, which is never 0 for a real packet.
 */
export const BPF_MATCH_NOTHING = 'less 0';

/**
 * The tcpdump filter expression for a filter list; `''` means "capture everything" (no
 * filters, or a filter that matches every packet).
 *
 * Protocol TCP → `tcp`, UDP → `udp`, Any with ports → `(tcp or udp)` (so SCTP, which
 * libpcap's `port` also accepts, never matches), Any without ports → no protocol term.
 * Addresses are qualified with `ip` / `ip6` because a bare `host`/`net` also matches ARP
 * and RARP, which the userland matcher cannot see. Only address families that can occur on
 * both sides are emitted.
 */
export function compileBpf(filters: readonly FilterSpec[], options: CompileBpfOptions): string {
  if (filters.length === 0) {
    return '';
  }
  const compiled: Expr[] = [];
  for (const filter of filters) {
    const result = compileFilter(filter, options.hostAddresses);
    if (result.kind === 'all') {
      return '';
    }
    if (result.kind === 'expr') {
      compiled.push(result.expr);
    }
  }
  return compiled.length === 0 ? BPF_MATCH_NOTHING : render(or(compiled));
}

/** A pcap-filter expression tree; rendering parenthesizes every compound operand. */
type Expr = string | { readonly op: 'and' | 'or'; readonly items: readonly Expr[] };

function and(items: readonly Expr[]): Expr {
  return combine('and', items);
}

function or(items: readonly Expr[]): Expr {
  return combine('or', items);
}

function combine(op: 'and' | 'or', items: readonly Expr[]): Expr {
  const flat = items.flatMap((item) =>
    typeof item !== 'string' && item.op === op ? item.items : [item],
  );
  return flat.length === 1 ? (flat[0] as Expr) : { op, items: flat };
}

// pcap-filter gives `and` and `or` the same precedence (left-associative), so every compound
// operand must be parenthesized.
function render(expr: Expr): string {
  if (typeof expr === 'string') {
    return expr;
  }
  return expr.items
    .map((item) => (typeof item === 'string' ? item : `(${render(item)})`))
    .join(` ${expr.op} `);
}

type Side = 'src' | 'dst';

/** One filter compiled: an expression, or a filter that matches every packet / none here. */
type Compiled = { readonly kind: 'expr'; readonly expr: Expr } | { readonly kind: 'all' | 'none' };

function compileFilter(filter: FilterSpec, hostAddresses: readonly HostAddress[]): Compiled {
  const { protocol, localAddress, remoteAddress, localPort, remotePort } = filter;
  const hasPorts = localPort !== undefined || remotePort !== undefined;
  const protocolTerm: Expr[] =
    protocol === 'TCP'
      ? ['tcp']
      : protocol === 'UDP'
        ? ['udp']
        : hasPorts
          ? [or(['tcp', 'udp'])]
          : [];

  if (!hasPorts && localAddress === undefined && remoteAddress === undefined) {
    return protocolTerm.length === 0 ? { kind: 'all' } : { kind: 'expr', expr: and(protocolTerm) };
  }

  // The blocks that identify the local side; undefined = use the kernel's direction.
  let localBlocks: Cidr[] | undefined;
  if (localAddress !== undefined) {
    localBlocks = localAddress.ranges.flatMap(rangeToCidrs);
  } else if (hostAddresses.length > 0) {
    localBlocks = hostBlocks(hostAddresses);
  }
  let remoteBlocks = remoteAddress?.ranges.flatMap(rangeToCidrs);

  // Keep only families that can be on both sides.
  const localFamilies: IpFamily[] = localBlocks ? familiesOf(localBlocks) : [4, 6];
  const remoteFamilies: IpFamily[] = remoteAddress ? families(remoteAddress) : [4, 6];
  const usable = localFamilies.filter((family) => remoteFamilies.includes(family));
  if (usable.length === 0) {
    return { kind: 'none' };
  }
  localBlocks = localBlocks?.filter((block) => usable.includes(block.family));
  remoteBlocks = remoteBlocks?.filter((block) => usable.includes(block.family));

  const direction = (local: Side, remote: Side): Expr =>
    and([
      localBlocks ? addressTerm(local, localBlocks) : local === 'src' ? 'outbound' : 'inbound',
      ...(remoteBlocks ? [addressTerm(remote, remoteBlocks)] : []),
      ...(localPort ? [portTerm(local, localPort)] : []),
      ...(remotePort ? [portTerm(remote, remotePort)] : []),
    ]);

  return {
    kind: 'expr',
    expr: and([...protocolTerm, or([direction('src', 'dst'), direction('dst', 'src')])]),
  };
}

function hostBlocks(hostAddresses: readonly HostAddress[]): Cidr[] {
  const seen = new Set<string>();
  const out: Cidr[] = [];
  for (const { family, value } of hostAddresses) {
    const key = `${family}/${String(value)}`;
    if (!seen.has(key)) {
      seen.add(key);
      out.push({ family, base: value, prefix: familyBits(family) });
    }
  }
  return out.sort((a, b) =>
    a.family !== b.family ? a.family - b.family : a.base < b.base ? -1 : a.base > b.base ? 1 : 0,
  );
}

function familiesOf(blocks: readonly Cidr[]): IpFamily[] {
  return ([4, 6] as const).filter((family) => blocks.some((block) => block.family === family));
}

function addressTerm(side: Side, blocks: readonly Cidr[]): Expr {
  return or(
    blocks.map((block) => {
      const proto = block.family === 4 ? 'ip' : 'ip6';
      const address = formatIp(block.family, block.base);
      return block.prefix === familyBits(block.family)
        ? `${proto} ${side} host ${address}`
        : `${proto} ${side} net ${address}/${block.prefix}`;
    }),
  );
}

function portTerm(side: Side, ports: PortSet): Expr {
  return or(
    ports.ranges.map((range) =>
      range.first === range.last
        ? `${side} port ${range.first}`
        : `${side} portrange ${range.first}-${range.last}`,
    ),
  );
}
