/**
 * The names a self-signed server certificate is for (its subjectAltName): loopback always, this
 * host's names and addresses so that agents on other hosts can verify it, the listen address
 * when it is a specific one, and whatever the operator adds with `--tls-san`. Everything comes
 * from this host (os.hostname(), /etc/hosts, os.networkInterfaces()): no DNS query leaves it.
 */
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import os from 'node:os';
import { WirewatchError } from '../model/errors.js';

/** One subjectAltName entry, normalised: DNS names lower case, IPs in canonical form. */
export interface SanEntry {
  readonly type: 'DNS' | 'IP';
  readonly value: string;
}

const LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/;

/** A DNS name (optionally `*.` in front) or undefined. */
function dnsName(text: string): string | undefined {
  const name = text.toLowerCase().replace(/\.$/, '');
  if (name.length === 0 || name.length > 253) return undefined;
  const labels = name.split('.');
  const first = labels[0] === '*' && labels.length > 2 ? labels.slice(1) : labels;
  return first.every((l) => LABEL.test(l)) && !/^\d+$/.test(labels.at(-1)!) ? name : undefined;
}

/** The canonical text of an IP address (`::1`, not `0:0:0:0:0:0:0:1`), or undefined. */
export function canonicalIp(text: string): string | undefined {
  if (text.includes('%')) return undefined;
  const family = isIP(text);
  // Node's isIP takes dotted quads without leading zeros only: already canonical.
  if (family === 4) return text;
  if (family === 6) return new URL(`http://[${text}]/`).hostname.slice(1, -1);
  return undefined;
}

/**
 * A `--tls-san` value: an IP address or a DNS name (letters, digits and hyphens per label, up to
 * 253 characters; `*.` allowed in front).
 *
 * @throws WirewatchError InvalidRequestContent naming the value and the rule.
 */
export function parseSan(text: string): SanEntry {
  const trimmed = text.trim();
  const ip = canonicalIp(trimmed);
  if (ip !== undefined) return { type: 'IP', value: ip };
  const name = dnsName(trimmed);
  if (name !== undefined) return { type: 'DNS', value: name };
  throw new WirewatchError(
    'InvalidRequestContent',
    `--tls-san: ${JSON.stringify(text)} is neither an IP address nor a DNS name (labels of letters, digits and '-', up to 63 each and 253 in all; '*.' allowed in front)`,
    { target: 'tls-san' },
  );
}

export interface ServerNamesOptions {
  /** The host of `--listen`; a wildcard (0.0.0.0, ::) adds nothing. */
  readonly listenHost: string;
  /** `--tls-san` values. */
  readonly extra?: readonly string[];
  /** Defaults: os.hostname(), /etc/hosts, os.networkInterfaces(). */
  readonly hostname?: string;
  readonly hostsFile?: string;
  readonly interfaces?: NodeJS.Dict<os.NetworkInterfaceInfo[]>;
}

export const LOOPBACK_NAMES: readonly SanEntry[] = [
  { type: 'DNS', value: 'localhost' },
  { type: 'IP', value: '127.0.0.1' },
  { type: 'IP', value: '::1' },
];

/**
 * The names of this server: loopback, the host name and its fully qualified names from
 * /etc/hosts, every address of a non-internal interface (IPv6 link-local ones excepted: they
 * need a zone, which certificates cannot carry), a specific listen address, and `extra`.
 * Sorted, without duplicates, so that the same host always gives the same set.
 *
 * @throws WirewatchError when an `extra` value is not a name or address.
 */
export function serverNames(options: ServerNamesOptions): SanEntry[] {
  const entries: SanEntry[] = [...LOOPBACK_NAMES];
  const hostname = options.hostname ?? os.hostname();
  const host = dnsName(hostname);
  if (host !== undefined) {
    entries.push({ type: 'DNS', value: host });
    for (const fqdn of namesInHostsFile(host, options.hostsFile ?? readHostsFile())) {
      entries.push({ type: 'DNS', value: fqdn });
    }
  }
  for (const list of Object.values(options.interfaces ?? os.networkInterfaces())) {
    for (const info of list ?? []) {
      if (info.internal) continue;
      const ip = canonicalIp(info.address);
      if (ip === undefined || /^fe[89ab]/i.test(ip)) continue;
      entries.push({ type: 'IP', value: ip });
    }
  }
  const listen = options.listenHost;
  if (listen !== '0.0.0.0' && listen !== '::') {
    const ip = canonicalIp(listen);
    const name = ip === undefined ? dnsName(listen) : undefined;
    if (ip !== undefined) entries.push({ type: 'IP', value: ip });
    else if (name !== undefined) entries.push({ type: 'DNS', value: name });
  }
  for (const text of options.extra ?? []) entries.push(parseSan(text));
  return sortSans(entries);
}

/** Sorted (DNS before IP, then by value) and without duplicates. */
export function sortSans(entries: readonly SanEntry[]): SanEntry[] {
  const unique = new Map(entries.map((e) => [`${e.type}:${e.value}`, e]));
  return [...unique.values()].sort((a, b) =>
    a.type === b.type ? a.value.localeCompare(b.value) : a.type === 'DNS' ? -1 : 1,
  );
}

/** The entries of a certificate's subjectAltName as Node prints it (`DNS:a, IP Address:b`). */
export function parseSubjectAltName(text: string | undefined): SanEntry[] {
  const entries: SanEntry[] = [];
  for (const part of (text ?? '').split(', ')) {
    if (part.startsWith('DNS:')) {
      entries.push({ type: 'DNS', value: part.slice(4).toLowerCase() });
    } else if (part.startsWith('IP Address:')) {
      const ip = canonicalIp(part.slice(11));
      if (ip !== undefined) entries.push({ type: 'IP', value: ip });
    }
  }
  return sortSans(entries);
}

/** `DNS:a,IP:b` for an openssl config. */
export function opensslSubjectAltName(entries: readonly SanEntry[]): string {
  return entries.map((e) => `${e.type}:${e.value}`).join(',');
}

function readHostsFile(): string {
  try {
    return readFileSync('/etc/hosts', 'utf8');
  } catch {
    return '';
  }
}

/** Fully qualified names of `host` in an /etc/hosts text: dotted names whose first label it is. */
function namesInHostsFile(host: string, text: string): string[] {
  const short = host.split('.')[0]!;
  const found: string[] = [];
  for (const line of text.split('\n')) {
    const names = line.replace(/#.*/, '').trim().split(/\s+/).slice(1);
    if (!names.some((n) => n.toLowerCase() === host || n.toLowerCase() === short)) continue;
    for (const n of names) {
      const name = dnsName(n);
      if (name?.includes('.') && name.split('.')[0] === short) found.push(name);
    }
  }
  return found;
}
