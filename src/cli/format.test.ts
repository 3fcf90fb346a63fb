import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { formatBytes, formatTime, shortenId } from './format.js';
import { formatTable, formatTsv, type Column } from './output.js';

describe('formatBytes', () => {
  it.each([
    [0, '0 B'],
    [1023, '1023 B'],
    [1024, '1.0 KiB'],
    [1536, '1.5 KiB'],
    [348_979, '340.8 KiB'],
    // Just under a unit: never "1024.0 KiB".
    [1024 * 1024 - 1, '1.0 MiB'],
    [1024 * 1024 - 52, '1023.9 KiB'],
    [1024 * 1024, '1.0 MiB'],
    [1024 ** 3 - 1, '1.0 GiB'],
    [1073741824, '1.0 GiB'],
    [5 * 1024 ** 4, '5.0 TiB'],
    [3 * 1024 ** 5, '3072.0 TiB'],
  ])('%d bytes read %s', (bytes, text) => {
    expect(formatBytes(bytes)).toBe(text);
  });
});

describe('shortenId', () => {
  it.each([
    [
      '/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkWatchers/nw/packetCaptures/pc1',
      '…/packetCaptures/pc1',
    ],
    ['/subscriptions/0000', '/subscriptions/0000'],
    ['pc1', 'pc1'],
    ['', ''],
  ])('%s → %s', (id, short) => {
    expect(shortenId(id)).toBe(short);
  });
});

// Node reads TZ again whenever it is set: each test sets the zone it needs.
const tz = process.env['TZ'];
afterEach(() => {
  if (tz === undefined) delete process.env['TZ'];
  else process.env['TZ'] = tz;
});

describe('formatTime', () => {
  const now = Date.parse('2026-12-07T22:00:00.000Z');

  it('shows UTC as UTC, to the second, and how long ago within the hour', () => {
    process.env['TZ'] = 'UTC';
    expect(formatTime('2026-12-07T21:58:00.500Z', now)).toBe('2026-12-07 21:58:00 (2 min ago)');
    expect(formatTime('2026-12-07T21:59:15Z', now)).toBe('2026-12-07 21:59:15 (45 s ago)');
    expect(formatTime('2026-12-07T22:00:00Z', now)).toBe('2026-12-07 22:00:00 (now)');
    expect(formatTime('2026-12-07T22:14:00Z', now)).toBe('2026-12-07 22:14:00 (in 14 min)');
    expect(formatTime('2026-12-07T21:00:00Z', now)).toBe('2026-12-07 21:00:00');
    expect(formatTime('2026-01-02T03:04:05Z', now)).toBe('2026-01-02 03:04:05');
  });

  it('shows the local time of TZ, across a date line', () => {
    process.env['TZ'] = 'Asia/Tokyo';
    expect(formatTime('2026-12-07T21:00:00Z', now)).toBe('2026-12-08 06:00:00');
    process.env['TZ'] = 'America/New_York';
    expect(formatTime('2026-07-01T02:30:00Z', now)).toBe('2026-06-30 22:30:00');
  });

  it('leaves what is not a time as it is', () => {
    expect(formatTime('never', now)).toBe('never');
  });
});

describe('formatTable and formatTsv: a column kind changes the table only', () => {
  beforeEach(() => {
    process.env['TZ'] = 'UTC';
  });
  interface Row {
    id: string;
    bytes: number;
    time: string;
    limit: number;
  }
  const columns: Column<Row>[] = [
    { header: 'Id', get: (r) => r.id, kind: 'id' },
    { header: 'Bytes', get: (r) => r.bytes, kind: 'bytes' },
    { header: 'Time', get: (r) => r.time, kind: 'time' },
    { header: 'TimeLimit', get: (r) => r.limit, kind: 'seconds' },
  ];
  const rows: Row[] = [
    {
      id: '/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkWatchers/nw/packetCaptures/pc1',
      bytes: 348_979,
      time: '2026-12-07T21:58:00Z',
      limit: 300,
    },
  ];

  it('table: human sizes, short ids, local times, units in headers', () => {
    expect(formatTable(rows, columns, { now: Date.parse('2026-12-07T22:00:00Z') })).toBe(
      [
        'Id                    Bytes      Time                             TimeLimit (s)',
        '--------------------  ---------  -------------------------------  -------------',
        '…/packetCaptures/pc1  340.8 KiB  2026-12-07 21:58:00 (2 min ago)  300',
        '',
      ].join('\n'),
    );
  });

  it('tsv: the values exactly as the API gave them', () => {
    expect(formatTsv(rows, columns)).toBe(`${rows[0]!.id}\t348979\t2026-12-07T21:58:00Z\t300\n`);
  });
});
