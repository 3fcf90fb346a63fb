import { describe, expect, it } from 'vitest';
import { compareRecordTime, placeInWindow, recordTimeMs } from './record-time.js';
import type { ByteOrder, TimestampPrecision } from './types.js';
import { encodeRecord } from './writer.js';

const SEC = 1_700_000_000;

function stamped(tsSec: number, tsFrac: number, byteOrder: ByteOrder): Buffer {
  // A byte in front, so that the header is read at its offset, not at 0.
  const record = encodeRecord(
    { tsSec, tsFrac, originalLength: 4, data: Buffer.alloc(4) },
    { byteOrder },
  );
  return Buffer.concat([Buffer.alloc(1), record]);
}

describe('record stamps', () => {
  for (const byteOrder of ['LE', 'BE'] as const) {
    it(`reads the time of a record in ms, micro and nano (${byteOrder})`, () => {
      expect(
        recordTimeMs(stamped(SEC, 250_000, byteOrder), 1, { byteOrder, precision: 'micro' }),
      ).toBe(SEC * 1000 + 250);
      expect(
        recordTimeMs(stamped(SEC, 1_500_000, byteOrder), 1, { byteOrder, precision: 'nano' }),
      ).toBe(SEC * 1000 + 1.5);
    });

    it(`compares a nanosecond stamp inside the instant's microsecond as later (${byteOrder})`, () => {
      const format = { byteOrder, precision: 'nano' as TimestampPrecision };
      const us = SEC * 1_000_000 + 7;
      expect(compareRecordTime(stamped(SEC, 7_000, byteOrder), 1, format, us)).toBe(0);
      expect(compareRecordTime(stamped(SEC, 7_001, byteOrder), 1, format, us)).toBeGreaterThan(0);
      expect(compareRecordTime(stamped(SEC, 6_999, byteOrder), 1, format, us)).toBeLessThan(0);
    });
  }
});

describe('placeInWindow', () => {
  const format = { byteOrder: 'LE', precision: 'micro' } as const;
  const startUs = SEC * 1_000_000;
  const window = { startUs, startSlackUs: 2_000_000, endUs: startUs + 10_000_000 };
  const at = (us: number) => stamped(Math.floor(us / 1e6), us % 1e6, 'LE');

  it('places leading records stamped shortly before the start early, and only while leading', () => {
    expect(placeInWindow(at(startUs - 1), 1, format, window, true)).toBe('early');
    expect(placeInWindow(at(startUs - 2_000_000), 1, format, window, true)).toBe('early');
    expect(placeInWindow(at(startUs - 1), 1, format, window, false)).toBe('inside');
  });

  it('takes a stamp far before the start for a clock that stepped back: inside', () => {
    expect(placeInWindow(at(startUs - 2_000_001), 1, format, window, true)).toBe('inside');
  });

  it('places records stamped after the deadline late, once there is one', () => {
    expect(placeInWindow(at(startUs + 10_000_000), 1, format, window, false)).toBe('inside');
    expect(placeInWindow(at(startUs + 10_000_001), 1, format, window, true)).toBe('late');
    expect(
      placeInWindow(at(startUs + 10_000_001), 1, format, { ...window, endUs: undefined }, false),
    ).toBe('inside');
  });
});
