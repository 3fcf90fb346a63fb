import { describe, expect, it } from 'vitest';
import { parseProcNetRoute } from './default-route.js';

describe('parseProcNetRoute', () => {
  it('finds the default route in /proc/net/route', () => {
    const table = [
      'Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT',
      'eth1\t00000000\t0102A8C0\t0003\t0\t0\t200\t00000000\t0\t0\t0',
      'eth0\t00000000\t0101A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0',
      'eth0\t0001A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0',
    ].join('\n');
    expect(parseProcNetRoute(table)).toBe('eth0');
    expect(parseProcNetRoute(table.split('\n').slice(0, 1).join('\n'))).toBeUndefined();
  });
});
