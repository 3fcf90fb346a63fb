/**
 * What the server keeps of an agent's reported files and blobs: only the names it planned for
 * the session, whatever encoding or path trick the report uses.
 */
import { describe, expect, it } from 'vitest';
import { acceptReportedFiles, matchReportedBlobs } from './session-files.js';

const ROOT = '/var/captures';
const STORAGE = 'http://127.0.0.1:10000/devstoreaccount1/network-watcher-logs';
const NAME =
  'subscriptions/s/resourcegroups/rg/providers/microsoft.compute/virtualmachines/vm/2026/12/07/packetcapture_10_00_00_000.cap';
const OWN = `${STORAGE}/${NAME}`;

describe('acceptReportedFiles', () => {
  it('keeps the planned file, in the planned folder or the same folders below a resolved root', () => {
    const planned = '/var/captures/web/a.cap';
    const { files, refused } = acceptReportedFiles(
      [
        planned,
        '/mnt/real-captures/web/a.cap',
        planned,
        '/var/captures/a.cap',
        '/var/captures/other/a.cap',
        '/var/captures/web/../web/a.cap',
        '/var/captures/web/b.cap',
        '/var/captures/web/a_1.cap',
        'web/a.cap',
        '/etc/shadow',
      ],
      planned,
      ROOT,
      false,
    );
    expect(files).toEqual([planned, '/mnt/real-captures/web/a.cap']);
    expect(refused).toHaveLength(8);
  });

  it('keeps ring files <stem>_<n><ext> only', () => {
    const planned = '/var/captures/ring.cap';
    const { files } = acceptReportedFiles(
      [
        '/var/captures/ring_1.cap',
        '/var/captures/ring_12.cap',
        '/var/captures/ring_01.cap',
        '/var/captures/ring_1.pcap',
        '/var/captures/ring_x.cap',
        '/var/captures/ring.cap',
        '/var/captures/ring_1.cap.cap',
      ],
      planned,
      ROOT,
      true,
    );
    expect(files).toEqual(['/var/captures/ring_1.cap', '/var/captures/ring_12.cap']);
  });
});

describe('matchReportedBlobs', () => {
  const single = { storagePath: OWN, blobName: NAME, continuous: false };
  const ring = { ...single, continuous: true };
  const base = OWN.replace(/\.cap$/, '');

  it('a single capture: its own URL only; the name is the server-derived one', () => {
    expect(matchReportedBlobs([{ url: OWN, size: 5 }], single)).toEqual({
      kind: 'ok',
      blobs: [{ url: OWN, name: NAME, reportedSize: 5 }],
    });
    for (const url of [`${OWN}?x=1`, `${base}_1.cap`, `${OWN}/..`, OWN.toUpperCase()]) {
      expect(matchReportedBlobs([{ url, size: 5 }], single)).toEqual({ kind: 'foreign', url });
    }
  });

  it('a ring: <blob>_<n>.cap, n a plain positive number; anything after the prefix is refused', () => {
    const got = matchReportedBlobs(
      [
        { url: `${base}_3.cap`, size: 1 },
        { url: `${base}_3.cap`, size: 1 },
        { url: `${base}_10.cap`, size: 2 },
      ],
      ring,
    );
    expect(got).toEqual({
      kind: 'ok',
      blobs: [
        {
          url: `${base}_3.cap`,
          name: NAME.replace(/\.cap$/, '_3.cap'),
          reportedSize: 1,
          fileIndex: 3,
        },
        {
          url: `${base}_10.cap`,
          name: NAME.replace(/\.cap$/, '_10.cap'),
          reportedSize: 2,
          fileIndex: 10,
        },
      ],
    });
    for (const url of [
      `${base}_0.cap`,
      `${base}_03.cap`,
      `${base}_1.cap/../../x.cap`,
      `${base}_1%2F..%2F..%2Fx.cap`,
      `${base}_1/%2e%2e/x.cap`,
      `${base}_99999999999999999.cap`,
      `${base}_1x.cap`,
      `${base}_.cap`,
    ]) {
      expect(matchReportedBlobs([{ url, size: 1 }], ring).kind, url).toBe('foreign');
    }
  });
});
