import { describe, expect, it } from 'vitest';
import { bpfInstructions, isRoot } from '../../test/support/pcap-tools.js';
import { BPF_MATCH_NOTHING, compileBpf } from './bpf.js';
import { parseFilters } from './filter.js';
import { tryParseIpAddress, type IpAddress } from './ip.js';
import { ownTrafficExpression, withoutOwnTraffic, type OwnTraffic } from './own-traffic.js';

function ip(text: string): IpAddress {
  const parsed = tryParseIpAddress(text);
  if (!parsed.ok) throw new Error(parsed.reason);
  return parsed.value;
}

const localPorts = { first: 61000, last: 61015 };

/** The agent at 10.77.1.1 talks to the server 10.77.1.2:8443 and to storage at [fd77::2]:10000. */
const own: OwnTraffic = {
  localPorts,
  flows: [
    { local: ip('fd77::1'), remote: ip('fd77::2'), remotePort: 10000 },
    { local: ip('10.77.1.1'), remote: ip('10.77.1.2'), remotePort: 8443 },
  ],
};

const SERVER =
  '(ip src host 10.77.1.1 and src portrange 61000-61015 and ip dst host 10.77.1.2 and dst port 8443) or ' +
  '(ip src host 10.77.1.2 and src port 8443 and ip dst host 10.77.1.1 and dst portrange 61000-61015)';
const STORAGE =
  '(ip6 src host fd77::1 and src portrange 61000-61015 and ip6 dst host fd77::2 and dst port 10000) or ' +
  '(ip6 src host fd77::2 and src port 10000 and ip6 dst host fd77::1 and dst portrange 61000-61015)';

describe('the agent’s own connections in the kernel filter', () => {
  it('names each own 5-tuple exactly: both directions, IPv4 before IPv6, under one tcp', () => {
    expect(ownTrafficExpression(own)).toBe(`tcp and (${SERVER} or ${STORAGE})`);
  });

  it('leaves them out of an unfiltered capture', () => {
    expect(withoutOwnTraffic('', own)).toBe(`not (tcp and (${SERVER} or ${STORAGE}))`);
  });

  it('parenthesizes a user filter, whose or must not bind the exclusion', () => {
    const user = compileBpf(parseFilters([{ protocol: 'TCP', localPort: '443' }]), {
      hostAddresses: [],
    });
    expect(user).toBe('tcp and ((outbound and src port 443) or (inbound and dst port 443))');
    expect(withoutOwnTraffic(user, own)).toBe(
      `(${user}) and not (tcp and (${SERVER} or ${STORAGE}))`,
    );
  });

  it('changes nothing when the capture includes its own traffic or there is nothing to leave out', () => {
    expect(withoutOwnTraffic('udp', undefined)).toBe('udp');
    expect(withoutOwnTraffic('', undefined)).toBe('');
    expect(withoutOwnTraffic('', { localPorts, flows: [] })).toBe('');
    expect(withoutOwnTraffic(BPF_MATCH_NOTHING, own)).toBe(BPF_MATCH_NOTHING);
  });

  it('names an endpoint once, skips a flow whose families differ, and a one-port pool is a port', () => {
    const flow = { local: ip('127.0.0.1'), remote: ip('127.0.0.1'), remotePort: 80 };
    const text = ownTrafficExpression({
      localPorts: { first: 61000, last: 61000 },
      flows: [flow, flow, { local: ip('::1'), remote: ip('127.0.0.1'), remotePort: 81 }],
    });
    expect(text).toBe(
      'tcp and ((ip src host 127.0.0.1 and src port 61000 and ip dst host 127.0.0.1 and dst port 80) or ' +
        '(ip src host 127.0.0.1 and src port 80 and ip dst host 127.0.0.1 and dst port 61000))',
    );
  });

  describe.skipIf(!isRoot)('tcpdump -d compiles it (root)', () => {
    it.each([
      ['unfiltered', withoutOwnTraffic('', own)],
      [
        'with a user filter',
        withoutOwnTraffic(
          compileBpf(parseFilters([{ protocol: 'UDP', remoteIPAddress: '10.77.0.0/16' }]), {
            hostAddresses: [{ family: 4, value: ip('10.77.1.1').value }],
          }),
          own,
        ),
      ],
    ])('%s', async (_name, expression) => {
      expect(await bpfInstructions(expression)).toBeGreaterThan(1);
    });

    it('stays far under the kernel limit with many endpoints', async () => {
      const flows = Array.from({ length: 32 }, (_, i) => ({
        local: ip(i % 2 === 0 ? '10.77.1.1' : 'fd77::1'),
        remote: ip(i % 2 === 0 ? `10.77.2.${i}` : `fd77::2:${i}`),
        remotePort: 443,
      }));
      const count = await bpfInstructions(withoutOwnTraffic('', { localPorts, flows }));
      expect(count).toBeLessThan(1024);
    });
  });
});
