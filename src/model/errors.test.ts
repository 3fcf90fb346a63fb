import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { errorCodes, WirewatchError } from './errors.js';

describe('error registry', () => {
  const doc = readFileSync(new URL('../../docs/errors.md', import.meta.url), 'utf8');
  const documented = new Map(
    [...doc.matchAll(/^\| `(\w+)`\s*\| (\d{3})\s*\|/gm)].map((m) => [m[1]!, Number(m[2])]),
  );

  it('documents every code with its status, and no code that does not exist', () => {
    const registry = new Map(Object.entries(errorCodes).map(([code, e]) => [code, e.status]));
    expect(documented).toEqual(registry);
  });

  it("renders Azure's error body", () => {
    const err = new WirewatchError('InvalidFilter', 'filters[0].localPort: "80-" is bad', {
      target: 'filters[0].localPort',
    });
    expect(err.status).toBe(400);
    expect(err.toBody()).toEqual({
      error: {
        code: 'InvalidFilter',
        message: 'filters[0].localPort: "80-" is bad',
        target: 'filters[0].localPort',
      },
    });
  });
});
