/**
 * The server's public URL: the base of every absolute URL it hands out (`Azure-AsyncOperation`,
 * `Location`, `nextLink`). Clients follow those with their bearer token, so they are never built
 * from the request's `Host` header, which anyone can forge.
 */
import type { AddressInfo } from 'node:net';
import { hostname } from 'node:os';
import { WirewatchError } from '../model/errors.js';

/**
 * `--public-url`: an http(s) origin, optionally with a path prefix of a reverse proxy (no
 * query, fragment or credentials). Returned without a trailing slash.
 */
export function parsePublicUrl(text: string): string {
  const bad = (rule: string) =>
    new WirewatchError('InvalidRequestContent', `--public-url: "${text}" ${rule}`, {
      target: 'publicUrl',
    });
  let url: URL;
  try {
    url = new URL(text.trim());
  } catch {
    throw bad('is not a URL (e.g. https://wirewatch.example.com:7443)');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw bad('must be http or https');
  if (url.username || url.password) throw bad('must not carry credentials');
  if (url.search || url.hash) throw bad('must not have a query or fragment');
  return `${url.origin}${url.pathname.replace(/\/+$/, '')}`;
}

/**
 * The URL a server bound at `address` is reached at when no public URL was given: the bound
 * address, except that a wildcard (0.0.0.0, ::) becomes `wildcardHost` (default this
 * machine's host name).
 */
export function derivePublicUrl(
  address: AddressInfo,
  tls: boolean,
  wildcardHost: string = hostname(),
): string {
  const wildcard = address.address === '0.0.0.0' || address.address === '::';
  const host = wildcard
    ? wildcardHost
    : address.family === 'IPv6' || address.address.includes(':')
      ? `[${address.address}]`
      : address.address;
  return `${tls ? 'https' : 'http'}://${host}:${address.port}`;
}
