import { describe, expect, it } from 'vitest';
import { ringFileName } from '../capture/ring-buffer.js';
import { CAPTURE_CONTAINER, captureBlobName, ringFileBlobUrl } from './blob-names.js';

const SUB = '6F1C2B3A-0000-4000-8000-00000000ABCD';

describe('captureBlobName', () => {
  it("follows Azure's pattern: ids lower-cased, the creation's UTC time", () => {
    expect(CAPTURE_CONTAINER).toBe('network-watcher-logs');
    expect(
      captureBlobName({
        subscriptionId: SUB,
        resourceGroup: 'My-RG',
        vmName: 'WebVM01',
        createdAt: new Date('2026-03-04T05:06:07.089Z'),
      }),
    ).toBe(
      'subscriptions/6f1c2b3a-0000-4000-8000-00000000abcd/resourcegroups/my-rg/providers/microsoft.compute/virtualmachines/webvm01/2026/03/04/packetcapture_05_06_07_089.cap',
    );
  });

  it("names a scale-set instance's blob under its scale set and instance id", () => {
    expect(
      captureBlobName({
        subscriptionId: SUB,
        resourceGroup: 'My-RG',
        vmName: 'Web_3',
        instance: { scaleSet: 'Web', instanceId: '3' },
        createdAt: new Date('2026-03-04T05:06:07.089Z'),
      }),
    ).toBe(
      'subscriptions/6f1c2b3a-0000-4000-8000-00000000abcd/resourcegroups/my-rg/providers/microsoft.compute/virtualmachinescalesets/web/virtualmachines/3/2026/03/04/packetcapture_05_06_07_089.cap',
    );
  });

  it('uses UTC whatever the time zone, and pads every field', () => {
    // 23:59:59.001 on 31 December in UTC is already the next year east of Greenwich.
    expect(
      captureBlobName({
        subscriptionId: 's',
        resourceGroup: 'rg',
        vmName: 'vm',
        createdAt: new Date(Date.UTC(2025, 11, 31, 23, 59, 59, 1)),
      }),
    ).toMatch(/\/2025\/12\/31\/packetcapture_23_59_59_001\.cap$/);
    expect(
      captureBlobName({
        subscriptionId: 's',
        resourceGroup: 'rg',
        vmName: 'vm',
        createdAt: new Date(Date.UTC(2027, 0, 2, 3, 4, 5, 600)),
      }),
    ).toMatch(/\/2027\/01\/02\/packetcapture_03_04_05_600\.cap$/);
  });

  it('refuses an invalid date', () => {
    expect(() =>
      captureBlobName({
        subscriptionId: 's',
        resourceGroup: 'rg',
        vmName: 'vm',
        createdAt: new Date('nope'),
      }),
    ).toThrow(RangeError);
  });
});

describe('ringFileBlobUrl', () => {
  const url =
    'http://127.0.0.1:10000/devstoreaccount1/network-watcher-logs/subscriptions/s/resourcegroups/rg/providers/microsoft.compute/virtualmachines/vm/2026/03/04/packetcapture_05_06_07_089.cap';

  it('inserts _n before the extension of the last path segment', () => {
    expect(ringFileBlobUrl(url, 3)).toBe(url.replace(/\.cap$/, '_3.cap'));
    expect(ringFileBlobUrl('https://h/c/a.b/file.pcap', 12)).toBe('https://h/c/a.b/file_12.pcap');
  });

  it('keeps a query and a fragment as they are', () => {
    expect(ringFileBlobUrl(`${url}?sv=1&sig=a.b%2Fc`, 1)).toBe(
      `${url.replace(/\.cap$/, '_1.cap')}?sv=1&sig=a.b%2Fc`,
    );
    expect(ringFileBlobUrl('https://h/c/x.cap#frag.x', 2)).toBe('https://h/c/x_2.cap#frag.x');
  });

  it('mirrors ringFileName on names without an extension, dotfiles and bare names', () => {
    for (const name of ['x.cap', 'noext', '.hidden', 'a.b.cap', 'trailing.']) {
      expect(ringFileBlobUrl(`https://h/c/${name}`, 4)).toBe(
        `https://h/c/${ringFileName(name, 4)}`,
      );
      expect(ringFileBlobUrl(`dir/${name}`, 4)).toBe(`dir/${ringFileName(name, 4)}`);
    }
    expect(ringFileBlobUrl('packetcapture_01_02_03_004.cap', 7)).toBe(
      'packetcapture_01_02_03_004_7.cap',
    );
  });
});
