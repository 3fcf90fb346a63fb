import { describe, expect, it } from 'vitest';
import { vmNameFromHostname } from './up.js';

describe('vmNameFromHostname', () => {
  it.each([
    ['web-01', 'web-01'],
    ['web-01.example.com', 'web-01.example.com'],
    ['my host', 'my-host'],
    ['-.x_y', 'x_y'],
    ['host-', 'host'],
    ['héte', 'h-te'],
    ['', 'localhost'],
    ['...', 'localhost'],
    ['a'.repeat(80), 'a'.repeat(64)],
    [`${'a'.repeat(63)}.b`, 'a'.repeat(63)],
  ])('%j → %j', (hostname, name) => {
    expect(vmNameFromHostname(hostname)).toBe(name);
    expect(name).toMatch(/^[A-Za-z0-9][-A-Za-z0-9._]*$/);
    expect(name.length).toBeLessThanOrEqual(64);
  });
});
