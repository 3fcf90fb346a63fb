import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { errorCodes } from './errors.js';
import { pcErrors, toPcError } from './pc-error.js';

describe('toPcError', () => {
  it("maps every registry code (any an agent can send from a WirewatchError) to one of Azure's PcError values", () => {
    for (const code of Object.keys(errorCodes)) {
      expect(pcErrors, code).toContain(toPcError(code));
    }
  });

  it('keeps the PcError values themselves (StorageFailed and AgentStopped come from uploads and the server)', () => {
    for (const code of pcErrors) expect(toPcError(code)).toBe(code);
  });

  it('reports what an agent sends when a capture cannot start or write as CaptureFailed or LocalFileFailed', () => {
    expect(
      Object.fromEntries(
        [
          'InvalidFilter',
          'InvalidCaptureLimit',
          'CaptureFailed',
          'InvalidCapturePath',
          'LocalFileFailed',
          'InvalidPcap',
          'CaptureFileGone',
        ].map((c) => [c, toPcError(c)]),
      ),
    ).toEqual({
      InvalidFilter: 'CaptureFailed',
      InvalidCaptureLimit: 'CaptureFailed',
      CaptureFailed: 'CaptureFailed',
      InvalidCapturePath: 'LocalFileFailed',
      LocalFileFailed: 'LocalFileFailed',
      InvalidPcap: 'LocalFileFailed',
      CaptureFileGone: 'LocalFileFailed',
    });
  });

  it('reads a code it does not know (a newer agent, a typo) as InternalError', () => {
    for (const code of ['', 'SomethingNew', 'invalidfilter', 'toString', '__proto__']) {
      expect(toPcError(code)).toBe('InternalError');
    }
  });

  it('agrees with the table in docs/errors.md "Capture errors"', () => {
    const doc = readFileSync(new URL('../../docs/errors.md', import.meta.url), 'utf8');
    const section = doc.slice(doc.indexOf('## Capture errors'));
    let codes = 0;
    for (const m of section.matchAll(/^\| (.+?)\s*\| `(\w+)`\s*\|$/gm)) {
      const pcError = m[2]!;
      for (const code of m[1]!.matchAll(/`(\w+)`/g)) {
        expect(toPcError(code[1]!), code[1]).toBe(pcError);
        codes++;
      }
    }
    expect(codes).toBeGreaterThan(15);
  });
});
