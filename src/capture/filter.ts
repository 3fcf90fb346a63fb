/**
 * Parsing Azure's PacketCaptureFilter strings into the typed filter model (filter-spec.ts).
 * This is the only place where user filter text is read; everything downstream (BPF, the
 * userland matcher) works on the parsed values.
 */
import { WirewatchError } from '../model/errors.js';
import type {
  FilterProtocol,
  FilterSpec,
  IpFamily,
  IpRange,
  IpSet,
  PacketCaptureFilter,
  PortRange,
  PortSet,
} from './filter-spec.js';
import {
  cidrToRange,
  compareIpAddresses,
  rangeToCidrs,
  tryParseCidr,
  tryParseIpAddress,
} from './ip.js';

/**
 * Upper bounds that keep the compiled BPF program under the kernel's 4096-instruction limit
 * (BPF_MAXINSNS) for the worst case: filter.test.ts compiles a list at every limit and
 * counts the instructions `tcpdump -d` prints.
 */
export const filterLimits = {
  /** CIDR blocks in the minimal cover of one address field (ranges are counted as blocks). */
  cidrsPerField: 64,
  /** Port ranges (after merging) in one port field; a single port counts as one. */
  portRangesPerField: 64,
  /** Filters in one list. */
  filters: 16,
  /** CIDR blocks over all address fields of all filters of a list. */
  cidrsPerList: 256,
  /** Port ranges over all port fields of all filters of a list. */
  portRangesPerList: 128,
  /** Characters in one field value, so that parsing work stays bounded. */
  fieldLength: 4096,
} as const;

const FIELDS = ['protocol', 'localIPAddress', 'remoteIPAddress', 'localPort', 'remotePort'];

/**
 * Parses the filter list of a packet capture. `undefined`, `null` or an empty list means no
 * filtering. The input may be raw JSON: anything that is not an array of filter objects is
 * rejected with `InvalidFilter`.
 */
export function parseFilters(list: readonly PacketCaptureFilter[] | undefined): FilterSpec[] {
  const raw: unknown = list;
  if (raw === undefined || raw === null) {
    return [];
  }
  if (!Array.isArray(raw)) {
    throw invalid('filters', `filters: expected an array of filters, got ${describe(raw)}`);
  }
  if (raw.length > filterLimits.filters) {
    throw invalid(
      'filters',
      `filters: ${raw.length} filters given; at most ${filterLimits.filters} are allowed`,
    );
  }
  const specs = raw.map((f: unknown, i) => parseFilter(f as PacketCaptureFilter, i));
  const cidrs = specs.reduce(
    (n, spec) => n + cidrCount(spec.localAddress) + cidrCount(spec.remoteAddress),
    0,
  );
  if (cidrs > filterLimits.cidrsPerList) {
    throw invalid(
      'filters',
      `filters: the address fields cover ${cidrs} CIDR blocks in all; at most ` +
        `${filterLimits.cidrsPerList} are allowed per filter list`,
    );
  }
  const ports = specs.reduce(
    (n, spec) => n + (spec.localPort?.ranges.length ?? 0) + (spec.remotePort?.ranges.length ?? 0),
    0,
  );
  if (ports > filterLimits.portRangesPerList) {
    throw invalid(
      'filters',
      `filters: the port fields hold ${ports} port ranges in all; at most ` +
        `${filterLimits.portRangesPerList} are allowed per filter list`,
    );
  }
  return specs;
}

function cidrCount(set: IpSet | undefined): number {
  return set ? set.ranges.reduce((n, r) => n + rangeToCidrs(r).length, 0) : 0;
}

/**
 * Parses one PacketCaptureFilter (the `index`-th of its list, used in error targets such as
 * `filters[2].localPort`).
 *
 * Each field is empty (missing, `null`, `""` or only spaces: no constraint) or a list of
 * entries separated by `;`, with one trailing `;` allowed. Spaces and tabs around entries are
 * ignored. An address entry is an IPv4 or IPv6 address ("10.0.0.1", "fd77::1",
 * "::ffff:10.0.0.1"), an inclusive range of one family ("10.0.0.1-10.0.0.9") or a CIDR
 * block without host bits ("10.0.0.0/8"); a port entry is N or N-M with
 * 0 ≤ N ≤ M ≤ 65535, written without leading zeros. Families may mix within a list, and
 * ranges may mix with single entries — a superset of Azure, which allows one range or one
 * list. `protocol` is TCP, UDP or Any in any letter case; missing or empty means Any.
 * Unknown fields are rejected (a misspelt field would otherwise silently widen the capture),
 * as is a filter whose local and remote addresses share no family (it could never match).
 *
 * @throws WirewatchError `InvalidFilter`, with `target` naming the field and a message
 *   naming the offending entry and the rule it broke.
 */
export function parseFilter(f: PacketCaptureFilter, index: number): FilterSpec {
  const where = `filters[${index}]`;
  const raw: unknown = f;
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw invalid(where, `${where}: expected a filter object, got ${describe(raw)}`);
  }
  for (const key of Object.keys(raw)) {
    if (!FIELDS.includes(key)) {
      throw invalid(
        `${where}.${key}`,
        `${where}.${key}: unknown filter field ${quote(key)} (expected one of ${FIELDS.join(', ')})`,
      );
    }
  }
  const fields = raw as Record<string, unknown>;
  const protocol = parseProtocol(fields.protocol, `${where}.protocol`);
  const localAddress = parseIpField(fields.localIPAddress, `${where}.localIPAddress`);
  const remoteAddress = parseIpField(fields.remoteIPAddress, `${where}.remoteIPAddress`);
  const localPort = parsePortField(fields.localPort, `${where}.localPort`);
  const remotePort = parsePortField(fields.remotePort, `${where}.remotePort`);

  if (localAddress && remoteAddress) {
    const local = families(localAddress);
    if (!families(remoteAddress).some((family) => local.includes(family))) {
      throw invalid(
        where,
        `${where}: localIPAddress (IPv${local.join('/IPv')} only) and remoteIPAddress ` +
          `(IPv${families(remoteAddress).join('/IPv')} only) share no address family, ` +
          'so the filter could never match',
      );
    }
  }
  return {
    protocol,
    ...(localAddress && { localAddress }),
    ...(remoteAddress && { remoteAddress }),
    ...(localPort && { localPort }),
    ...(remotePort && { remotePort }),
  };
}

/** The address families present in a set, IPv4 first. */
export function families(set: IpSet): IpFamily[] {
  const out: IpFamily[] = [];
  if (set.ranges.some((r) => r.family === 4)) out.push(4);
  if (set.ranges.some((r) => r.family === 6)) out.push(6);
  return out;
}

function parseProtocol(value: unknown, target: string): FilterProtocol {
  const text = fieldText(value, target);
  if (text === undefined) {
    return 'Any';
  }
  switch (text.toLowerCase()) {
    case 'tcp':
      return 'TCP';
    case 'udp':
      return 'UDP';
    case 'any':
      return 'Any';
    default:
      throw invalid(
        target,
        `${target}: ${quote(text)} is not a protocol (expected TCP, UDP or Any)`,
      );
  }
}

function parseIpField(value: unknown, target: string): IpSet | undefined {
  const tokens = fieldTokens(value, target);
  if (tokens === undefined) {
    return undefined;
  }
  const ranges = normalizeIpRanges(tokens.map((token) => parseIpToken(token, target)));
  const blocks = cidrCount({ ranges });
  if (blocks > filterLimits.cidrsPerField) {
    throw invalid(
      target,
      `${target}: ${quote(String(value))} covers ${blocks} CIDR blocks; at most ` +
        `${filterLimits.cidrsPerField} are allowed per field`,
    );
  }
  return { ranges };
}

function parseIpToken(token: string, target: string): IpRange {
  const bad = (what: string, reason: string): WirewatchError =>
    invalid(target, `${target}: ${quote(token)} is not ${what}: ${reason} (${ADDRESS_RULE})`);

  if (token.includes('/')) {
    const cidr = tryParseCidr(token);
    if (!cidr.ok) throw bad('a CIDR block', cidr.reason);
    return cidrToRange(cidr.value);
  }
  if (token.includes('-')) {
    const ends = token.split('-');
    if (ends.length !== 2) throw bad('an address range', 'expected FIRST-LAST');
    const [firstText, lastText] = ends.map((end) => end.trim()) as [string, string];
    const first = tryParseIpAddress(firstText);
    if (!first.ok)
      throw bad('an address range', `first address ${quote(firstText)}: ${first.reason}`);
    const last = tryParseIpAddress(lastText);
    if (!last.ok) throw bad('an address range', `last address ${quote(lastText)}: ${last.reason}`);
    if (first.value.family !== last.value.family) {
      throw bad('an address range', 'both ends must be of the same address family');
    }
    if (first.value.value > last.value.value) {
      throw bad('an address range', 'the first address is above the last');
    }
    return { family: first.value.family, first: first.value.value, last: last.value.value };
  }
  const address = tryParseIpAddress(token);
  if (!address.ok) throw bad('an IP address', address.reason);
  return { family: address.value.family, first: address.value.value, last: address.value.value };
}

/** Sorts by family then start, and merges overlapping and adjacent ranges. */
function normalizeIpRanges(ranges: readonly IpRange[]): IpRange[] {
  const sorted = [...ranges].sort((a, b) =>
    compareIpAddresses({ family: a.family, value: a.first }, { family: b.family, value: b.first }),
  );
  const out: IpRange[] = [];
  for (const r of sorted) {
    const prev = out.at(-1);
    if (prev && prev.family === r.family && r.first <= prev.last + 1n) {
      if (r.last > prev.last) out[out.length - 1] = { ...prev, last: r.last };
    } else {
      out.push(r);
    }
  }
  return out;
}

const ADDRESS_RULE = 'expected ADDRESS, FIRST-LAST or ADDRESS/PREFIX, with IPv4 or IPv6 addresses';
const PORT = /^(0|[1-9][0-9]{0,4})$/;
const PORT_RULE = 'expected N or N-M, 0 ≤ N ≤ M ≤ 65535, without leading zeros';

function parsePortField(value: unknown, target: string): PortSet | undefined {
  const tokens = fieldTokens(value, target);
  if (tokens === undefined) {
    return undefined;
  }
  const ranges = normalizePortRanges(tokens.map((token) => parsePortToken(token, target)));
  if (ranges.length > filterLimits.portRangesPerField) {
    throw invalid(
      target,
      `${target}: ${quote(String(value))} has ${ranges.length} separate port ranges; at most ` +
        `${filterLimits.portRangesPerField} are allowed per field`,
    );
  }
  return { ranges };
}

function parsePortToken(token: string, target: string): PortRange {
  const ends = token.split('-').map((end) => end.trim());
  const numbers = ends.map((end) => (PORT.test(end) ? Number(end) : NaN));
  const first = numbers[0] ?? NaN;
  const last = numbers[1] ?? first;
  if (
    ends.length > 2 ||
    Number.isNaN(first) ||
    Number.isNaN(last) ||
    last > 65535 ||
    first > last
  ) {
    throw invalid(target, `${target}: ${quote(token)} is not a port or port range (${PORT_RULE})`);
  }
  return { first, last };
}

function normalizePortRanges(ranges: readonly PortRange[]): PortRange[] {
  const sorted = [...ranges].sort((a, b) => a.first - b.first);
  const out: PortRange[] = [];
  for (const r of sorted) {
    const prev = out.at(-1);
    if (prev && r.first <= prev.last + 1) {
      if (r.last > prev.last) out[out.length - 1] = { first: prev.first, last: r.last };
    } else {
      out.push(r);
    }
  }
  return out;
}

/** The trimmed text of a field, or undefined when the field sets no constraint. */
function fieldText(value: unknown, target: string): string | undefined {
  if (value === undefined || value === null) {
    return undefined;
  }
  if (typeof value !== 'string') {
    throw invalid(target, `${target}: expected a string, got ${describe(value)}`);
  }
  if (value.length > filterLimits.fieldLength) {
    throw invalid(
      target,
      `${target}: ${quote(value)} is ${value.length} characters long; at most ` +
        `${filterLimits.fieldLength} are allowed`,
    );
  }
  const text = value.trim();
  return text === '' ? undefined : text;
}

/** The `;`-separated entries of a field (one trailing `;` allowed), or undefined if empty. */
function fieldTokens(value: unknown, target: string): string[] | undefined {
  const text = fieldText(value, target);
  if (text === undefined) {
    return undefined;
  }
  const tokens = text.split(';').map((token) => token.trim());
  if (tokens.length > 1 && tokens.at(-1) === '') {
    tokens.pop();
  }
  if (tokens.includes('')) {
    throw invalid(
      target,
      `${target}: ${quote(text)} has an empty entry (entries are separated by ";", ` +
        'with at most one trailing ";")',
    );
  }
  return tokens;
}

function invalid(target: string, message: string): WirewatchError {
  return new WirewatchError('InvalidFilter', message, { target });
}

/** User text quoted for a message: JSON escapes, so control characters stay visible; long text is cut. */
function quote(text: string): string {
  return JSON.stringify(text.length > 80 ? `${text.slice(0, 77)}...` : text);
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string') return `string ${quote(value)}`;
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') {
    return `${typeof value} ${String(value)}`;
  }
  return typeof value === 'object' ? 'an object' : typeof value;
}
