/**
 * IP address arithmetic for the filter model: strict text parsing into bigints, canonical
 * formatting, CIDR blocks and the minimal CIDR cover of a range. No I/O, no Node APIs.
 */
import type { IpFamily, IpRange } from './filter-spec.js';

/** One address of either family, as an unsigned integer. */
export interface IpAddress {
  readonly family: IpFamily;
  readonly value: bigint;
}

/** A CIDR block: `base` has no bits set beyond the first `prefix` bits. */
export interface Cidr {
  readonly family: IpFamily;
  readonly base: bigint;
  readonly prefix: number;
}

/** The outcome of parsing text: the value, or a short reason saying which rule the text broke. */
export type ParseResult<T> =
  { readonly ok: true; readonly value: T } | { readonly ok: false; readonly reason: string };

const ok = <T>(value: T): ParseResult<T> => ({ ok: true, value });
const fail = <T>(reason: string): ParseResult<T> => ({ ok: false, reason });

/** Number of bits in an address of the family. */
export function familyBits(family: IpFamily): number {
  return family === 4 ? 32 : 128;
}

/** The largest address of the family (all bits set). */
export function maxAddress(family: IpFamily): bigint {
  return (1n << BigInt(familyBits(family))) - 1n;
}

const DECIMAL_OCTET = /^[0-9]{1,3}$/;
const HEX_GROUP = /^[0-9a-fA-F]{1,4}$/;

/**
 * Parses a dotted-quad IPv4 address: exactly four decimal octets 0–255, ASCII digits only,
 * no leading zeros (so "010.0.0.1" is rejected rather than read as octal or decimal).
 */
export function tryParseIpv4(text: string): ParseResult<bigint> {
  const parts = text.split('.');
  if (parts.length !== 4) {
    return fail('an IPv4 address has exactly 4 dot-separated octets');
  }
  let value = 0n;
  for (const part of parts) {
    if (!DECIMAL_OCTET.test(part)) {
      return fail('each IPv4 octet is 1 to 3 decimal digits');
    }
    if (part.length > 1 && part.startsWith('0')) {
      return fail(`IPv4 octet "${part}" has a leading zero`);
    }
    const octet = Number(part);
    if (octet > 255) {
      return fail(`IPv4 octet ${part} is greater than 255`);
    }
    value = (value << 8n) | BigInt(octet);
  }
  return ok(value);
}

/**
 * Parses an IPv6 address in the text forms of RFC 4291 §2.2: eight groups of 1–4 hex
 * digits, at most one "::" standing for one or more zero groups, and optionally a dotted
 * IPv4 tail in place of the last two groups. Zone ids ("%eth0") and brackets are rejected.
 */
export function tryParseIpv6(text: string): ParseResult<bigint> {
  if (text.includes('%')) {
    return fail('IPv6 zone ids are not supported');
  }
  const halves = text.split('::');
  if (halves.length > 2) {
    return fail('"::" may appear only once in an IPv6 address');
  }
  const compressed = halves.length === 2;
  const head = halves[0] === '' ? [] : (halves[0] ?? '').split(':');
  const tail = compressed ? (halves[1] === '' ? [] : (halves[1] ?? '').split(':')) : [];
  const groups: number[] = [];
  const tailGroups: number[] = [];
  const all = [...head, ...tail];
  for (let i = 0; i < all.length; i++) {
    const group = all[i] ?? '';
    const target = i < head.length ? groups : tailGroups;
    // A dotted tail is allowed only as the very last thing in the text ("1.2.3.4::" is not).
    const last = i === all.length - 1 && (!compressed || tail.length > 0);
    if (last && group.includes('.')) {
      const v4 = tryParseIpv4(group);
      if (!v4.ok) {
        return fail(`embedded IPv4 tail: ${v4.reason}`);
      }
      target.push(Number(v4.value >> 16n), Number(v4.value & 0xffffn));
      continue;
    }
    if (!HEX_GROUP.test(group)) {
      return fail(
        group === ''
          ? 'an IPv6 address has no empty groups outside a single "::"'
          : 'each IPv6 group is 1 to 4 hex digits',
      );
    }
    target.push(parseInt(group, 16));
  }
  const count = groups.length + tailGroups.length;
  if (compressed ? count > 7 : count !== 8) {
    return fail(
      compressed
        ? 'an IPv6 address with "::" has at most 7 other groups'
        : 'an IPv6 address has 8 groups (or uses "::")',
    );
  }
  const zeros = new Array<number>(8 - count).fill(0);
  let value = 0n;
  for (const group of [...groups, ...zeros, ...tailGroups]) {
    value = (value << 16n) | BigInt(group);
  }
  return ok(value);
}

/** Orders addresses: IPv4 before IPv6, then by value. */
export function compareIpAddresses(a: IpAddress, b: IpAddress): number {
  if (a.family !== b.family) return a.family - b.family;
  return a.value < b.value ? -1 : a.value > b.value ? 1 : 0;
}

/** Parses an IPv4 or IPv6 address (the family is chosen by the presence of ':'). */
export function tryParseIpAddress(text: string): ParseResult<IpAddress> {
  const family: IpFamily = text.includes(':') ? 6 : 4;
  const parsed = family === 4 ? tryParseIpv4(text) : tryParseIpv6(text);
  return parsed.ok ? ok({ family, value: parsed.value }) : parsed;
}

/** Formats an IPv4 address as a dotted quad. */
export function formatIpv4(value: bigint): string {
  checkRange(4, value);
  return [24n, 16n, 8n, 0n].map((shift) => String((value >> shift) & 0xffn)).join('.');
}

/**
 * Formats an IPv6 address in RFC 5952 canonical form: lower case, no leading zeros, the
 * longest run (first on ties) of two or more zero groups as "::", and IPv4-mapped
 * addresses (::ffff:0:0/96) with a dotted tail, as §5 recommends.
 */
export function formatIpv6(value: bigint): string {
  checkRange(6, value);
  if (value >> 32n === 0xffffn) {
    return `::ffff:${formatIpv4(value & 0xffffffffn)}`;
  }
  const groups: number[] = [];
  for (let shift = 112n; shift >= 0n; shift -= 16n) {
    groups.push(Number((value >> shift) & 0xffffn));
  }
  let bestStart = -1;
  let bestLength = 1; // a single zero group is never compressed
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = (gs: number[]): string => gs.map((g) => g.toString(16)).join(':');
  if (bestStart < 0) {
    return hex(groups);
  }
  return `${hex(groups.slice(0, bestStart))}::${hex(groups.slice(bestStart + bestLength))}`;
}

/** Formats an address of either family canonically. */
export function formatIp(family: IpFamily, value: bigint): string {
  return family === 4 ? formatIpv4(value) : formatIpv6(value);
}

function checkRange(family: IpFamily, value: bigint): void {
  if (value < 0n || value > maxAddress(family)) {
    throw new RangeError(`${String(value)} is not an IPv${family} address value`);
  }
}

const PREFIX = /^[0-9]{1,3}$/;

/**
 * Parses a CIDR block, "10.0.0.0/8" or "fd77::/64". The prefix is decimal without leading
 * zeros, at most 32 (IPv4) or 128 (IPv6); the address must have no host bits set.
 */
export function tryParseCidr(text: string): ParseResult<Cidr> {
  const slash = text.indexOf('/');
  if (slash < 0) {
    return fail('a CIDR block is ADDRESS/PREFIX');
  }
  if (slash === 0) {
    return fail('a CIDR block is ADDRESS/PREFIX; the address is missing');
  }
  const address = tryParseIpAddress(text.slice(0, slash));
  if (!address.ok) {
    return address;
  }
  const { family, value } = address.value;
  const bits = familyBits(family);
  const prefixText = text.slice(slash + 1);
  if (!PREFIX.test(prefixText) || (prefixText.length > 1 && prefixText.startsWith('0'))) {
    return fail(`the prefix length is a decimal number 0-${bits} without leading zeros`);
  }
  const prefix = Number(prefixText);
  if (prefix > bits) {
    return fail(`the prefix length of an IPv${family} block is at most ${bits}`);
  }
  const hostMask = maxAddress(family) >> BigInt(prefix);
  if ((value & hostMask) !== 0n) {
    const base = value & ~hostMask;
    return fail(`host bits are set (did you mean ${formatIp(family, base)}/${prefix}?)`);
  }
  return ok({ family, base: value, prefix });
}

/** The inclusive address range a CIDR block covers. */
export function cidrToRange(cidr: Cidr): IpRange {
  const hostMask = maxAddress(cidr.family) >> BigInt(cidr.prefix);
  return { family: cidr.family, first: cidr.base, last: cidr.base | hostMask };
}

/**
 * The minimal list of CIDR blocks whose union is exactly the inclusive range, in address
 * order. Greedy from the low end: each step takes the largest block that starts at the
 * current address (alignment) and does not pass the end; this is known to be minimal.
 */
export function rangeToCidrs(range: IpRange): Cidr[] {
  const { family, first, last } = range;
  const bits = familyBits(family);
  if (first < 0n || last > maxAddress(family) || first > last) {
    throw new RangeError(`not an IPv${family} range: ${String(first)}-${String(last)}`);
  }
  const out: Cidr[] = [];
  let start = first;
  while (start <= last) {
    // The largest power-of-two block aligned at `start`…
    let size = bits;
    while (size > 0 && (start & ((1n << BigInt(size)) - 1n)) !== 0n) size--;
    // …shrunk until it fits before `last`.
    while (start + (1n << BigInt(size)) - 1n > last) size--;
    out.push({ family, base: start, prefix: bits - size });
    start += 1n << BigInt(size);
  }
  return out;
}

const valueOf = <T>(result: ParseResult<T>): T | undefined =>
  result.ok ? result.value : undefined;

/** {@link tryParseIpv4} without the reason: the address, or undefined if the text is not one. */
export function parseIpv4(text: string): bigint | undefined {
  return valueOf(tryParseIpv4(text));
}

/** {@link tryParseIpv6} without the reason: the address, or undefined if the text is not one. */
export function parseIpv6(text: string): bigint | undefined {
  return valueOf(tryParseIpv6(text));
}

/** {@link tryParseIpAddress} without the reason: the address, or undefined if the text is not one. */
export function parseIpAddress(text: string): IpAddress | undefined {
  return valueOf(tryParseIpAddress(text));
}

/** {@link tryParseCidr} without the reason: the block, or undefined if the text is not one. */
export function parseCidr(text: string): Cidr | undefined {
  return valueOf(tryParseCidr(text));
}
