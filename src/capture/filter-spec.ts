/**
 * The typed filter model. Azure's PacketCaptureFilter strings are parsed into these values at
 * the edge (see filter.ts); everything inside wirewatch — BPF compilation, the userland
 * matcher — works on these types only, never on user strings.
 */

export type IpFamily = 4 | 6;

/** An inclusive range of addresses of one family, as unsigned integers. */
export interface IpRange {
  readonly family: IpFamily;
  readonly first: bigint;
  readonly last: bigint;
}

/** A non-empty union of address ranges (families may mix across ranges). */
export interface IpSet {
  readonly ranges: readonly IpRange[];
}

/** An inclusive port range, 0..65535. */
export interface PortRange {
  readonly first: number;
  readonly last: number;
}

/** A non-empty union of port ranges. */
export interface PortSet {
  readonly ranges: readonly PortRange[];
}

export type FilterProtocol = 'TCP' | 'UDP' | 'Any';

/** One parsed filter: its fields are AND-ed; absent fields match anything. */
export interface FilterSpec {
  readonly protocol: FilterProtocol;
  readonly localAddress?: IpSet;
  readonly remoteAddress?: IpSet;
  readonly localPort?: PortSet;
  readonly remotePort?: PortSet;
}

/** Azure's PacketCaptureFilter, as it arrives on the wire. */
export interface PacketCaptureFilter {
  readonly protocol?: string;
  readonly localIPAddress?: string;
  readonly remoteIPAddress?: string;
  readonly localPort?: string;
  readonly remotePort?: string;
}

/** An address of the capturing host, used to tell outbound from inbound packets. */
export interface HostAddress {
  readonly family: IpFamily;
  readonly value: bigint;
}
