/**
 * The agent's stream requests: a stream per viewer, refused for a session not running here or a
 * capture file not really under the capture root; ended by a stop, a disconnect or close(),
 * holding the capture flushed while it runs.
 */
import { randomUUID } from 'node:crypto';
import { appendFile, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { HEADER, record, until } from '../../test/support/pcap-records.js';
import type { AgentMessage, CaptureAssignment } from '../model/channel.js';
import type { JournalEntry } from './journal.js';
import { StreamRequests } from './stream-requests.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'wirewatch-streams-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('stream requests', () => {
  function entry(capturePath: string, overrides: Partial<CaptureAssignment> = {}): JournalEntry {
    return {
      state: 'Running',
      capturePath,
      assignment: {
        sessionId: randomUUID(),
        resourceId: '/x',
        filePath: capturePath,
        filters: [],
        bytesToCapturePerPacket: 0,
        totalBytesPerSession: 1 << 30,
        timeLimitInSeconds: 60,
        continuousCapture: false,
        createdAt: new Date().toISOString(),
        ...overrides,
      },
    };
  }

  function harness(sessions: Map<string, JournalEntry>) {
    const messages: AgentMessage[] = [];
    const frames: Buffer[] = [];
    let disconnect: () => void = () => undefined;
    let endCapture!: () => void;
    const finished = new Promise<void>((resolve) => (endCapture = resolve));
    /** Streams holding the capture watched (flushed) right now. */
    let watchers = 0;
    const watch = () => {
      watchers++;
      return () => void watchers--;
    };
    const streams = new StreamRequests({
      session: (id) => {
        const e = sessions.get(id);
        return e === undefined ? undefined : { entry: () => e, finished, watch };
      },
      captureRoot: dir,
      send: (m) => messages.push(m),
      sendBinary: (frame) => {
        frames.push(frame);
        return Promise.resolve(true);
      },
      onDisconnect: (listener) => {
        disconnect = listener;
        return () => undefined;
      },
      log: () => undefined,
    });
    return {
      streams,
      request: (message: Parameters<StreamRequests['handle']>[0]) => streams.handle(message),
      messages,
      frames,
      disconnect: () => disconnect(),
      endCapture,
      watchers: () => watchers,
    };
  }

  it('an unknown session ends at once with CaptureNotRunning', () => {
    const h = harness(new Map());
    const streamId = randomUUID();
    h.request({ type: 'streamStart', streamId, sessionId: randomUUID() });
    expect(h.messages).toEqual([
      {
        type: 'streamEnd',
        streamId,
        packets: 0,
        dropped: 0,
        error: { code: 'CaptureNotRunning', message: expect.stringContaining('not running') },
      },
    ]);
  });

  it('streamStop ends with the counts; a disconnect ends every stream silently', async () => {
    const file = path.join(dir, 's.cap');
    await writeFile(file, HEADER);
    const e = entry(file);
    const h = harness(new Map([[e.assignment.sessionId, e]]));
    const one = randomUUID();
    const two = randomUUID();
    h.request({ type: 'streamStart', streamId: one, sessionId: e.assignment.sessionId });
    h.request({ type: 'streamStart', streamId: two, sessionId: e.assignment.sessionId });
    await until(() => h.frames.length === 2);
    await appendFile(file, record(1));
    await until(() => h.frames.length === 4);
    h.request({ type: 'streamStop', streamId: one });
    await until(() => h.messages.some((m) => m.type === 'streamEnd'));
    expect(h.messages.find((m) => m.type === 'streamEnd')).toEqual({
      type: 'streamEnd',
      streamId: one,
      packets: 1,
      dropped: 0,
    });
    h.disconnect();
    await until(() => h.streams.size === 0);
    expect(h.messages.filter((m) => m.type === 'streamEnd')).toHaveLength(1);
  });

  it('each stream holds the capture watched (flushed) until it ends, however it ends', async () => {
    const file = path.join(dir, 'w.cap');
    await writeFile(file, HEADER);
    const e = entry(file);
    const h = harness(new Map([[e.assignment.sessionId, e]]));
    const [one, two, three] = [randomUUID(), randomUUID(), randomUUID()];
    for (const streamId of [one, two, three]) {
      h.request({ type: 'streamStart', streamId, sessionId: e.assignment.sessionId });
    }
    expect(h.watchers()).toBe(3);
    h.request({ type: 'streamStop', streamId: one });
    await until(() => h.watchers() === 2);
    h.disconnect();
    await until(() => h.watchers() === 0);
    // A stream that ends with its capture lets go too.
    const four = randomUUID();
    h.request({ type: 'streamStart', streamId: four, sessionId: e.assignment.sessionId });
    expect(h.watchers()).toBe(1);
    h.endCapture();
    await until(() => h.messages.some((m) => m.type === 'streamEnd' && m.streamId === four));
    expect(h.watchers()).toBe(0);
  });

  it('a capture path outside the capture root is not streamed', async () => {
    const outside = await mkdtemp(path.join(tmpdir(), 'wirewatch-outside-'));
    try {
      const file = path.join(outside, 'x.cap');
      await writeFile(file, HEADER);
      const e = entry(file);
      const h = harness(new Map([[e.assignment.sessionId, e]]));
      const streamId = randomUUID();
      h.request({ type: 'streamStart', streamId, sessionId: e.assignment.sessionId });
      await until(() => h.messages.some((m) => m.type === 'streamEnd'));
      expect(h.frames).toHaveLength(0);
      expect(h.messages.find((m) => m.type === 'streamEnd')).toMatchObject({
        error: { code: 'InvalidCapturePath' },
      });
    } finally {
      await rm(outside, { recursive: true, force: true });
    }
  });

  it('close() ends every stream without a word, and is safe to call twice', async () => {
    const file = path.join(dir, 'c.cap');
    await writeFile(file, HEADER);
    const e = entry(file);
    const h = harness(new Map([[e.assignment.sessionId, e]]));
    for (let i = 0; i < 2; i++) {
      h.request({ type: 'streamStart', streamId: randomUUID(), sessionId: e.assignment.sessionId });
    }
    await until(() => h.frames.length === 2);
    h.streams.close();
    h.streams.close();
    await until(() => h.streams.size === 0 && h.watchers() === 0);
    expect(h.messages.filter((m) => m.type === 'streamEnd')).toHaveLength(0);
  });

  it('a capture path that leaves the capture root through a symbolic link is not streamed', async () => {
    // Under the root as a string, outside it on disk: the real-path test refuses it (the stream
    // did not check this before it shared the capture-root check of src/capture/capture-path.ts).
    const outside = await mkdtemp(path.join(tmpdir(), 'wirewatch-outside-'));
    try {
      await writeFile(path.join(outside, 'x.cap'), Buffer.concat([HEADER, record(1)]));
      await symlink(outside, path.join(dir, 'link'));
      await mkdir(path.join(dir, 'ring'));
      await symlink(outside, path.join(dir, 'ring', 'in'));
      for (const e of [
        entry(path.join(dir, 'link', 'x.cap')),
        entry(path.join(dir, 'ring', 'in', 'r.cap'), { continuousCapture: true }),
      ]) {
        if (e.assignment.continuousCapture) {
          await writeFile(path.join(outside, 'r_1.cap'), Buffer.concat([HEADER, record(1)]));
        }
        const h = harness(new Map([[e.assignment.sessionId, e]]));
        const streamId = randomUUID();
        h.request({ type: 'streamStart', streamId, sessionId: e.assignment.sessionId });
        await until(() => h.messages.some((m) => m.type === 'streamEnd'));
        expect(h.frames).toHaveLength(0);
        expect(h.messages.find((m) => m.type === 'streamEnd')).toMatchObject({
          streamId,
          error: { code: 'InvalidCapturePath', message: expect.stringMatching(/leads out/) },
        });
      }
    } finally {
      await rm(outside, { recursive: true, force: true });
    }
  });
});
