/**
 * The channel schema on what an agent may send: times that are real instants, counts that are
 * whole and exact, no more than the protocol's lists hold.
 */
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { isChannelTime, MAX_HELLO_SESSIONS, parseAgentMessage, toChannelError } from './channel.js';
import { WirewatchError } from './errors.js';

const progress = (at: string, packets: unknown = 1) =>
  JSON.stringify({
    type: 'progress',
    sessionId: randomUUID(),
    progress: { packets, bytes: 1, kernelDrops: 0, at },
  });

describe('times', () => {
  it('only real instants between 2000 and 2200', () => {
    for (const ok of [
      '2026-12-07T23:59:59Z',
      '2026-12-07T23:59:59.999+05:30',
      '2000-01-01T00:00:00Z',
    ]) {
      expect(isChannelTime(ok), ok).toBe(true);
      expect(parseAgentMessage(progress(ok)), ok).toBeDefined();
    }
    for (const bad of [
      '2026-12-07T23:59:60Z',
      '2026-02-30T00:00:00Z',
      '99999-01-01T00:00:00Z',
      '1999-12-31T23:59:59Z',
      '2200-01-01T00:00:01Z',
      'NaN',
    ]) {
      expect(parseAgentMessage(progress(bad)), bad).toBeUndefined();
    }
  });
});

describe('counts', () => {
  it('whole numbers from 0 to 2^53-1', () => {
    const at = new Date().toISOString();
    expect(parseAgentMessage(progress(at, Number.MAX_SAFE_INTEGER))).toBeDefined();
    for (const bad of [-1, 0.5, 2 ** 53, 1e300, '1', null]) {
      expect(parseAgentMessage(progress(at, bad)), String(bad)).toBeUndefined();
    }
  });
});

describe('lists', () => {
  it(`a hello holds at most ${MAX_HELLO_SESSIONS} sessions`, () => {
    const hello = (n: number) =>
      JSON.stringify({
        type: 'hello',
        protocolVersion: 1,
        agentVersion: 'x',
        hostname: 'h',
        captureRoot: '/r',
        sessions: Array.from({ length: n }, () => ({ sessionId: randomUUID(), state: 'Running' })),
      });
    expect(parseAgentMessage(hello(MAX_HELLO_SESSIONS))).toBeDefined();
    expect(parseAgentMessage(hello(MAX_HELLO_SESSIONS + 1))).toBeUndefined();
  });
});

describe('toChannelError', () => {
  it('keeps the code of a WirewatchError and gives anything else the other code', () => {
    expect(
      toChannelError(new WirewatchError('InvalidCapturePath', 'no'), 'LocalFileFailed'),
    ).toEqual({ code: 'InvalidCapturePath', message: 'no' });
    const enoent = Object.assign(new Error('ENOENT: gone'), { code: 'ENOENT' });
    expect(toChannelError(enoent, 'CaptureFileGone')).toEqual({
      code: 'CaptureFileGone',
      message: 'ENOENT: gone',
    });
    expect(toChannelError('thrown string', 'CaptureFailed')).toEqual({
      code: 'CaptureFailed',
      message: 'thrown string',
    });
  });

  it('cuts the message to what the channel carries', () => {
    const error = toChannelError(new Error('x'.repeat(5000)), 'CaptureFailed');
    expect(error.message).toBe('x'.repeat(4096));
    const end = { type: 'streamEnd', streamId: randomUUID(), packets: 0, dropped: 0, error };
    expect(parseAgentMessage(JSON.stringify(end))).toEqual(end);
  });
});
