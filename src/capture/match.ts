/**
 * The userland twin of compileBpf (bpf.ts): decides, for a decoded packet, what the
 * compiled BPF program would decide in the kernel. Keep the two in step; match.test.ts runs
 * both over the same pcap file and compares.
 *
 * What libpcap 1.10 generates (read from `tcpdump -d` output), and how it is mirrored here:
 * - `tcp` / `udp`: on IPv4 the protocol byte only — every fragment, first or not, of a TCP
 *   datagram matches `tcp`. On IPv6 the next-header field, or, when that is 44 (fragment),
 *   the fragment header's next-header: libpcap looks through exactly one fragment header and
 *   ignores its offset, so every fragment matches. Here: `ip.protocol`, which the decoder
 *   gives after extension headers.
 * - `src port` / `portrange`: on IPv4 the protocol must be TCP, UDP or SCTP and the fragment
 *   offset 0 (`jset #0x1fff`), so first fragments match and later ones never do. On IPv6
 *   the fixed header's next-header must be TCP, UDP or SCTP (no look-through, no fragment
 *   check), so no IPv6 fragment ever matches a port. Here: ports count only if
 *   (IPv4 and fragment offset 0) or (IPv6 and not a fragment).
 * - `ip`/`ip6 src host|net`: the EtherType and the address, nothing else.
 * - `outbound` / `inbound`: the Linux packet type; `inbound` is every type but OUTGOING.
 *
 * Known differences, outside "ordinary traffic":
 * - IPv6 with other extension headers (hop-by-hop, routing, destination options) before
 *   the upper layer: libpcap's `tcp`, `udp` and ports do not see through them, while the
 *   decoder reports the upper-layer protocol; the matcher then says yes where BPF says no.
 * - VLAN-tagged frames: the matcher looks at the IP packet inside the tags. That is what
 *   the kernel filter usually sees on a live Linux capture (the tag sits in packet metadata
 *   when the filter runs, and libpcap puts it back into the saved frame; see libpcap PR #583),
 *   but not what tcpdump does when it filters a saved file, or a live frame whose tag stayed
 *   inline: the EtherType at offset 12 is then 0x8100 and no `ip`/`tcp` term matches.
 * - Truncated packets: libpcap reads ports from 4 captured transport bytes, the decoder needs
 *   14 (TCP) or 8 (UDP) before it reports ports.
 */
import type { DecodedPacket } from '../pcap/types.js';
import type { FilterSpec, HostAddress, IpSet, PortSet } from './filter-spec.js';

export interface MatchFiltersOptions {
  /** The addresses of the capturing host on the capture interface; may be empty. */
  readonly hostAddresses: readonly HostAddress[];
}

const TCP = 6;
const UDP = 17;
const SCTP = 132;

type Side = 'src' | 'dst';

/**
 * True if the packet passes the filter list: an empty list passes everything, otherwise
 * any one filter must match (see compileBpf for the semantics). With no host addresses the
 * packet's kernel direction decides the local side; a packet of unknown direction then
 * fails every filter that needs one.
 */
export function matchesFilters(
  filters: readonly FilterSpec[],
  packet: DecodedPacket,
  options: MatchFiltersOptions,
): boolean {
  return (
    filters.length === 0 ||
    filters.some((filter) => matchesFilter(filter, packet, options.hostAddresses))
  );
}

function matchesFilter(
  filter: FilterSpec,
  packet: DecodedPacket,
  hostAddresses: readonly HostAddress[],
): boolean {
  const { protocol, localAddress, remoteAddress, localPort, remotePort } = filter;
  const hasPorts = localPort !== undefined || remotePort !== undefined;
  const protocolOk =
    protocol === 'TCP'
      ? isProtocol(packet, TCP)
      : protocol === 'UDP'
        ? isProtocol(packet, UDP)
        : !hasPorts || isProtocol(packet, TCP) || isProtocol(packet, UDP);
  if (!protocolOk) {
    return false;
  }
  if (!hasPorts && localAddress === undefined && remoteAddress === undefined) {
    return true;
  }
  const direction = (local: Side, remote: Side): boolean =>
    isLocal(packet, local, localAddress, hostAddresses) &&
    (remoteAddress === undefined || addressIn(packet, remote, remoteAddress)) &&
    (localPort === undefined || portIn(packet, local, localPort)) &&
    (remotePort === undefined || portIn(packet, remote, remotePort));
  return direction('src', 'dst') || direction('dst', 'src');
}

function isProtocol(packet: DecodedPacket, protocol: number): boolean {
  return packet.ip?.protocol === protocol;
}

/** Whether the `side` address of the packet is the capturing host's (see compileBpf). */
function isLocal(
  packet: DecodedPacket,
  side: Side,
  localAddress: IpSet | undefined,
  hostAddresses: readonly HostAddress[],
): boolean {
  if (localAddress !== undefined) {
    return addressIn(packet, side, localAddress);
  }
  if (hostAddresses.length > 0) {
    const ip = packet.ip;
    return (
      ip !== undefined &&
      hostAddresses.some((host) => host.family === ip.version && host.value === ip[side])
    );
  }
  // libpcap's `outbound` is PACKET_OUTGOING; `inbound` is every other packet type.
  if (packet.direction === undefined) {
    return false;
  }
  return side === 'src' ? packet.direction === 'outbound' : packet.direction !== 'outbound';
}

function addressIn(packet: DecodedPacket, side: Side, set: IpSet): boolean {
  const ip = packet.ip;
  if (ip === undefined) {
    return false;
  }
  const address = ip[side];
  return set.ranges.some(
    (range) => range.family === ip.version && range.first <= address && address <= range.last,
  );
}

function portIn(packet: DecodedPacket, side: Side, set: PortSet): boolean {
  const port = portOf(packet, side);
  return (
    port !== undefined && set.ranges.some((range) => range.first <= port && port <= range.last)
  );
}

/** The port libpcap's `src port` / `dst port` would read, if it reads one at all. */
function portOf(packet: DecodedPacket, side: Side): number | undefined {
  const ip = packet.ip;
  if (ip === undefined) {
    return undefined;
  }
  const reachable = ip.version === 4 ? ip.fragmentOffset === 0 : !ip.fragment;
  if (!reachable || (ip.protocol !== TCP && ip.protocol !== UDP && ip.protocol !== SCTP)) {
    return undefined;
  }
  const l4 = ip.protocol === TCP ? packet.tcp : ip.protocol === UDP ? packet.udp : undefined;
  if (l4 === undefined) {
    return undefined;
  }
  return side === 'src' ? l4.srcPort : l4.dstPort;
}
