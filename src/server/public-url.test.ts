import { hostname } from 'node:os';
import { describe, expect, it } from 'vitest';
import { derivePublicUrl, parsePublicUrl } from './public-url.js';

describe('parsePublicUrl', () => {
  it('keeps an http(s) origin and a path prefix, without the trailing slash', () => {
    expect(parsePublicUrl('https://ww.example.com:7443/')).toBe('https://ww.example.com:7443');
    expect(parsePublicUrl('http://10.0.0.5:7080')).toBe('http://10.0.0.5:7080');
    expect(parsePublicUrl('https://proxy.example.com/wirewatch/')).toBe(
      'https://proxy.example.com/wirewatch',
    );
  });

  it('refuses what is not a plain base URL, naming the option', () => {
    for (const bad of [
      '',
      'ww.example.com',
      'ftp://x',
      'https://a:b@x',
      'https://x/?a=1',
      'https://x/#f',
    ]) {
      expect(() => parsePublicUrl(bad), bad).toThrow(/--public-url/);
    }
  });
});

describe('derivePublicUrl', () => {
  it('uses the bound address, brackets IPv6, and the host name for a wildcard', () => {
    expect(derivePublicUrl({ address: '127.0.0.1', family: 'IPv4', port: 7080 }, false)).toBe(
      'http://127.0.0.1:7080',
    );
    expect(derivePublicUrl({ address: '::1', family: 'IPv6', port: 7443 }, true)).toBe(
      'https://[::1]:7443',
    );
    expect(derivePublicUrl({ address: '0.0.0.0', family: 'IPv4', port: 1 }, true)).toBe(
      `https://${hostname()}:1`,
    );
    expect(derivePublicUrl({ address: '::', family: 'IPv6', port: 7443 }, true, 'localhost')).toBe(
      'https://localhost:7443',
    );
  });
});
