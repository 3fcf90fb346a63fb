import { describe, expect, it } from 'vitest';
import { parseSan, parseSubjectAltName, serverNames } from './tls-names.js';

describe('parseSan', () => {
  it('takes DNS names (lower-cased, trailing dot dropped, *. in front) and IP addresses (canonical)', () => {
    expect(parseSan('WireWatch.Example.COM.')).toEqual({
      type: 'DNS',
      value: 'wirewatch.example.com',
    });
    expect(parseSan('server')).toEqual({ type: 'DNS', value: 'server' });
    expect(parseSan('*.wirewatch.example')).toEqual({ type: 'DNS', value: '*.wirewatch.example' });
    expect(parseSan('10.0.0.4')).toEqual({ type: 'IP', value: '10.0.0.4' });
    expect(parseSan('FD00:0:0::2')).toEqual({ type: 'IP', value: 'fd00::2' });
  });

  it('refuses anything else, naming the value', () => {
    for (const bad of [
      '',
      'two words',
      'under_score',
      '-lead.example',
      'trail-.example',
      'a..b',
      '*.com',
      'x.*.example',
      '1.2.3.999',
      '010.0.0.1',
      'fe80::1%eth0',
      `${'a'.repeat(64)}.example`,
    ]) {
      expect(() => parseSan(bad), bad).toThrow(
        /--tls-san: .* is neither an IP address nor a DNS name/,
      );
    }
  });
});

describe('serverNames', () => {
  const interfaces = {
    lo: [
      { address: '127.0.0.1', family: 'IPv4', internal: true, netmask: '', mac: '', cidr: null },
    ],
    eth0: [
      { address: '192.0.2.2', family: 'IPv4', internal: false, netmask: '', mac: '', cidr: null },
      {
        address: 'fd00::2',
        family: 'IPv6',
        internal: false,
        netmask: '',
        mac: '',
        cidr: null,
        scopeid: 0,
      },
      {
        address: 'fe80::fc:ff:fe00:1',
        family: 'IPv6',
        internal: false,
        netmask: '',
        mac: '',
        cidr: null,
        scopeid: 4,
      },
    ],
  } as const;

  it('is loopback, the host name and its FQDNs from /etc/hosts, the addresses, the listen host and extras', () => {
    const names = serverNames({
      listenHost: '192.0.2.9',
      extra: ['Alias.Example', '198.51.100.1'],
      hostname: 'Web-01',
      hostsFile:
        '127.0.0.1 localhost\n# 10.0.0.1 web-01.commented.example web-01\n127.0.1.1 web-01.corp.example web-01\n10.1.1.1 other.corp.example other\n',
      interfaces: interfaces as never,
    });
    expect(names.map((n) => `${n.type}:${n.value}`)).toEqual([
      'DNS:alias.example',
      'DNS:localhost',
      'DNS:web-01',
      'DNS:web-01.corp.example',
      'IP:::1',
      'IP:127.0.0.1',
      'IP:192.0.2.2',
      'IP:192.0.2.9',
      'IP:198.51.100.1',
      'IP:fd00::2',
    ]);
  });

  it('adds nothing for a wildcard listen address and skips a host name that is not a DNS name', () => {
    const names = serverNames({
      listenHost: '0.0.0.0',
      hostname: 'bad_host',
      hostsFile: '',
      interfaces: {},
    });
    expect(names.map((n) => `${n.type}:${n.value}`)).toEqual([
      'DNS:localhost',
      'IP:::1',
      'IP:127.0.0.1',
    ]);
  });
});

describe('parseSubjectAltName', () => {
  it("reads Node's rendering, IPv6 expanded, into the same canonical entries", () => {
    expect(
      parseSubjectAltName('DNS:LocalHost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1'),
    ).toEqual([
      { type: 'DNS', value: 'localhost' },
      { type: 'IP', value: '::1' },
      { type: 'IP', value: '127.0.0.1' },
    ]);
  });
});
