import { describe, expect, it } from 'vitest';
import { inOptionWords } from './option-words.js';

const fields = {
  timeLimitInSeconds: '--time-limit',
  filters: '--filters',
  'captureSettings.fileCount': '--file-count',
};

describe('inOptionWords', () => {
  it('names the option for a whole field, server or model', () => {
    expect(
      inOptionWords(
        {
          target: 'properties.timeLimitInSeconds',
          message: 'properties.timeLimitInSeconds: 20000 is above the maximum 18000',
        },
        fields,
        {},
      ),
    ).toBe('--time-limit 20000 is above the maximum 18000');
    expect(
      inOptionWords(
        {
          target: 'captureSettings.fileCount',
          message: 'captureSettings.fileCount: 10001 is above the maximum 10000',
        },
        fields,
        {},
      ),
    ).toBe('--file-count 10001 is above the maximum 10000');
  });

  it('names the place inside an option, and hints at a number where a string belongs', () => {
    const sent = { filters: [{ protocol: 'UDP' }, { localPort: 53 }] };
    expect(
      inOptionWords(
        {
          target: 'properties.filters[1].localPort',
          message: 'properties.filters[1].localPort: must be string',
        },
        fields,
        sent,
      ),
    ).toBe('--filters [1].localPort: 53 is a number; write it as a string, "53"');
    expect(
      inOptionWords(
        { target: 'filters[0].protocol', message: 'filters[0].protocol: "ICMP" is not TCP' },
        fields,
        sent,
      ),
    ).toBe('--filters [0].protocol: "ICMP" is not TCP');
  });

  it('names an entry of a list option by the value typed', () => {
    const lists = { 'scope.include': '--include' };
    const sent = { scope: { include: ['0', '7', ''] } };
    const said = (i: number) =>
      inOptionWords(
        { target: `properties.scope.include[${i}]`, message: 'names no instance' },
        lists,
        sent,
      );
    expect(said(1)).toBe('--include 7: names no instance');
    expect(said(2)).toBe('--include "": names no instance');
  });

  it('leaves an error about no option of the command alone', () => {
    expect(
      inOptionWords({ target: 'properties.storageLocation', message: 'x' }, fields, {}),
    ).toBeUndefined();
    expect(inOptionWords({ message: 'no target' }, fields, {})).toBeUndefined();
    // A field whose name only begins like an option's field is not that option's.
    expect(
      inOptionWords({ target: 'filtersX', message: 'filtersX: bad' }, fields, {}),
    ).toBeUndefined();
  });
});
