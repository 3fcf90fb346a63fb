/** The sessions a hello carries within the channel's limits (and those held back for later). */
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  CHANNEL_MAX_PAYLOAD_BYTES,
  CHANNEL_PROTOCOL_VERSION,
  parseAgentMessage,
  type ObservedSession,
} from '../model/channel.js';
import { fitHello } from './hello.js';

describe('a hello larger than the channel allows', () => {
  it('carries every running session (without its bulk) and the stopped ones that fit', () => {
    const at = new Date().toISOString();
    const files = (n: number) =>
      Array.from({ length: n }, (_, i) => `/var/captures/${'d'.repeat(200)}/ring_${i + 1}.cap`);
    const blobs = Array.from({ length: 20_000 }, (_, i) => ({
      url: `http://127.0.0.1:10000/devstoreaccount1/network-watcher-logs/${'b'.repeat(150)}_${i + 1}.cap`,
      size: 100,
    }));
    const running: ObservedSession[] = Array.from({ length: 3 }, () => ({
      sessionId: randomUUID(),
      state: 'Running',
      startTime: at,
      files: files(10_000),
      upload: { state: 'Pending', blobs },
    }));
    const stopped: ObservedSession[] = Array.from({ length: 4 }, () => ({
      sessionId: randomUUID(),
      state: 'Stopped',
      stopReason: 'TimeExceeded',
      stopTime: at,
      files: files(10_000),
    }));
    const { sessions, heldBack } = fitHello([...stopped, ...running]);
    const hello = JSON.stringify({
      type: 'hello',
      protocolVersion: CHANNEL_PROTOCOL_VERSION,
      agentVersion: 'x',
      hostname: 'h',
      captureRoot: '/var/captures',
      sessions,
    });
    expect(Buffer.byteLength(hello)).toBeLessThanOrEqual(CHANNEL_MAX_PAYLOAD_BYTES);
    expect(parseAgentMessage(hello)).toBeDefined();
    for (const r of running) {
      expect(sessions).toContainEqual({
        sessionId: r.sessionId,
        state: 'Running',
        startTime: at,
        upload: { state: 'Pending', blobs: [] },
      });
    }
    // About 2.2 MB per stopped session: three fit, the fourth waits for welcome.
    expect(heldBack).toHaveLength(1);
    expect(sessions.filter((s) => s.state === 'Stopped')).toHaveLength(3);
  });
});
