/**
 * Live streams on hand-written files: whole records only (a record written in pieces goes out
 * once it is whole), the header once, ring files followed in order (also past a deleted one),
 * records skipped and counted while the channel is behind, and the end.
 */
import { randomUUID } from 'node:crypto';
import { appendFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ringFileName } from '../capture/ring-buffer.js';
import type { AgentMessage, CaptureAssignment } from '../model/channel.js';
import { encodeFileHeader } from '../pcap/format.js';
import { encodeRecord } from '../pcap/writer.js';
import type { JournalEntry } from './journal.js';
import {
  handleStreamRequest,
  PcapTail,
  startLiveStream,
  type LiveStreamOptions,
  type StreamSource,
} from './live-stream.js';

const HEADER = encodeFileHeader({
  byteOrder: 'LE',
  precision: 'micro',
  versionMajor: 2,
  versionMinor: 4,
  snaplen: 262144,
  linkType: 1,
});

/** Record n: n bytes of n & 0xff (plus 20), stamped n seconds after 2026-01-01. */
function record(n: number, size = 20 + n): Buffer {
  return encodeRecord(
    { tsSec: 1_767_225_600 + n, tsFrac: 0, data: Buffer.alloc(size, n & 0xff) },
    { byteOrder: 'LE' },
  );
}

const records = (from: number, to: number) =>
  Buffer.concat(Array.from({ length: to - from + 1 }, (_, i) => record(from + i)));

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'wirewatch-live-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

// Generous: the machine may be busy with other tests; the conditions, not the time, are checked.
const until = async (check: () => boolean, ms = 20_000) => {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not met');
    await new Promise((r) => setTimeout(r, 10));
  }
};

/** A stream whose frames and messages are collected; `hold` keeps frames "in flight". */
function collect(source: StreamSource, overrides: Partial<LiveStreamOptions> = {}) {
  const streamId = randomUUID();
  const frames: Buffer[] = [];
  const messages: AgentMessage[] = [];
  let endCapture!: () => void;
  const captureEnded = new Promise<void>((resolve) => (endCapture = resolve));
  let closed = false;
  const stream = startLiveStream({
    streamId,
    source: () => source,
    captureEnded,
    send: (m) => messages.push(m),
    sendBinary: (frame) => {
      expect(frame.toString('latin1', 0, 36)).toBe(streamId);
      frames.push(Buffer.from(frame.subarray(36)));
      return Promise.resolve(true);
    },
    log: () => undefined,
    pollMs: 10,
    statsIntervalMs: 50,
    onClosed: () => (closed = true),
    ...overrides,
  });
  const end = () => messages.find((m) => m.type === 'streamEnd');
  return {
    stream,
    frames,
    messages,
    endCapture,
    end,
    closed: () => closed,
    /** Everything after the header frame. */
    body: () => Buffer.concat(frames.slice(1)),
  };
}

describe('PcapTail', () => {
  it('waits for the header and for the rest of a partial record', async () => {
    const file = path.join(dir, 'a.cap');
    await writeFile(file, HEADER.subarray(0, 10));
    const tail = await PcapTail.open(file);
    try {
      expect(await tail.readHeader()).toBeUndefined();
      const one = record(1);
      const two = record(2);
      await appendFile(file, Buffer.concat([HEADER.subarray(10), one, two.subarray(0, 7)]));
      expect(await tail.readHeader()).toEqual(HEADER);
      const first = await tail.read(1 << 20);
      expect(first?.records).toBe(1);
      expect(first?.data).toEqual(one);
      expect(first?.firstMs).toBe((1_767_225_600 + 1) * 1000);
      // Half a header, then half the data: nothing yet.
      expect(await tail.read(1 << 20)).toBeUndefined();
      await appendFile(file, two.subarray(7, 20));
      expect(await tail.read(1 << 20)).toBeUndefined();
      await appendFile(file, two.subarray(20));
      const second = await tail.read(1 << 20, 36);
      expect(second?.records).toBe(1);
      expect(second?.data.subarray(36)).toEqual(two);
      expect(tail.offset).toBe(24 + one.length + two.length);
    } finally {
      await tail.close();
    }
  });

  it('reads a record larger than the frame size whole, and skips by headers', async () => {
    const file = path.join(dir, 'big.cap');
    const big = record(7, 262144);
    await writeFile(file, Buffer.concat([HEADER, big, record(8), record(9)]));
    const tail = await PcapTail.open(file);
    try {
      await tail.readHeader();
      const batch = await tail.read(1000);
      expect(batch?.records).toBe(1);
      expect(batch?.data.length).toBe(big.length);
      expect(await tail.skip()).toBe(2);
      expect(await tail.skip()).toBe(0);
    } finally {
      await tail.close();
    }
  });

  it('never reads past the limit of a single file', async () => {
    const file = path.join(dir, 'limit.cap');
    await writeFile(file, Buffer.concat([HEADER, record(1), record(2)]));
    const tail = await PcapTail.open(file, 24 + record(1).length + 5);
    try {
      await tail.readHeader();
      expect((await tail.read(1 << 20))?.records).toBe(1);
      expect(await tail.read(1 << 20)).toBeUndefined();
    } finally {
      await tail.close();
    }
  });

  it('refuses a record length no capture can have', async () => {
    const file = path.join(dir, 'bad.cap');
    const bad = record(1);
    bad.writeUInt32LE(5_000_000, 8);
    await writeFile(file, Buffer.concat([HEADER, bad]));
    const tail = await PcapTail.open(file);
    try {
      await tail.readHeader();
      await expect(tail.read(1 << 20)).rejects.toMatchObject({ code: 'InvalidPcap' });
    } finally {
      await tail.close();
    }
  });
});

describe('live stream', () => {
  it('single file: header once, then only whole records written from now on, then the end', async () => {
    const file = path.join(dir, 'one.cap');
    await writeFile(file, Buffer.concat([HEADER, records(1, 3)]));
    const s = collect({ kind: 'file', path: file });
    await until(() => s.frames.length === 1);
    expect(s.frames[0]).toEqual(HEADER);
    // Records 4..40 arrive in pieces cut anywhere, as tcpdump's 4 KiB writes cut them.
    const later = records(4, 40);
    for (let at = 0; at < later.length; at += 37) {
      await appendFile(file, later.subarray(at, at + 37));
      await new Promise((r) => setTimeout(r, 3));
    }
    await until(() => s.body().length === later.length);
    expect(s.body()).toEqual(later);
    // Every frame holds whole records.
    for (const frame of s.frames.slice(1)) {
      let offset = 0;
      while (offset < frame.length) offset += 16 + frame.readUInt32LE(offset + 8);
      expect(offset).toBe(frame.length);
    }
    await appendFile(file, records(41, 42));
    s.endCapture();
    await until(() => s.end() !== undefined);
    expect(s.end()).toEqual({
      type: 'streamEnd',
      streamId: s.stream.streamId,
      packets: 39,
      dropped: 0,
    });
    expect(s.body()).toEqual(records(4, 42));
    expect(s.closed()).toBe(true);
    expect(s.messages.some((m) => m.type === 'streamStats')).toBe(true);
  });

  it('a file not written at the first look is streamed from its first record', async () => {
    const file = path.join(dir, 'late.cap');
    const s = collect({ kind: 'file', path: file });
    await new Promise((r) => setTimeout(r, 50));
    expect(s.frames).toHaveLength(0);
    // tcpdump's first buffer: part of the header only.
    await writeFile(file, HEADER.subarray(0, 20));
    await new Promise((r) => setTimeout(r, 50));
    expect(s.frames).toHaveLength(0);
    await appendFile(file, Buffer.concat([HEADER.subarray(20), record(1)]));
    await until(() => s.frames.length === 2);
    expect(s.frames[0]).toEqual(HEADER);
    await appendFile(file, record(2));
    await until(() => s.body().length === records(1, 2).length);
    expect(s.body()).toEqual(records(1, 2));
    s.stream.stop();
    await until(() => s.end() !== undefined);
    expect(s.end()).toMatchObject({ packets: 2, dropped: 0 });
  });

  it('ring: no file at the first look, then several: from the oldest', async () => {
    const stem = path.join(dir, 'new-ring.cap');
    const s = collect({ kind: 'ring', stem });
    await new Promise((r) => setTimeout(r, 50));
    await writeFile(ringFileName(stem, 1), Buffer.concat([HEADER, records(1, 2)]));
    await writeFile(ringFileName(stem, 2), Buffer.concat([HEADER, records(3, 3)]));
    await until(() => s.body().length === records(1, 3).length);
    s.endCapture();
    await until(() => s.end() !== undefined);
    expect(s.body()).toEqual(records(1, 3));
    expect(s.end()).toMatchObject({ packets: 3, dropped: 0 });
  });

  it('ring: follows stem_N in order, sends the header once, and passes a deleted file', async () => {
    const stem = path.join(dir, 'ring.cap');
    await writeFile(ringFileName(stem, 1), Buffer.concat([HEADER, records(1, 2)]));
    await writeFile(ringFileName(stem, 2), Buffer.concat([HEADER, records(3, 4)]));
    const s = collect({ kind: 'ring', stem });
    await until(() => s.frames.length === 1);
    // It begins after what the newest file (2) holds.
    await appendFile(ringFileName(stem, 2), records(5, 6));
    await writeFile(ringFileName(stem, 3), HEADER);
    await appendFile(ringFileName(stem, 3), records(7, 8));
    await until(() => s.body().length === records(5, 8).length);
    // Files 4 and 5 appear; 4 is deleted before the stream gets there (a small ring).
    await writeFile(ringFileName(stem, 4), Buffer.concat([HEADER, records(9, 9)]));
    await rm(ringFileName(stem, 3));
    await rm(ringFileName(stem, 4));
    await writeFile(ringFileName(stem, 5), Buffer.concat([HEADER, records(10, 11)]));
    // A file created whose header is not written yet is waited for.
    await writeFile(ringFileName(stem, 6), '');
    await new Promise((r) => setTimeout(r, 60));
    await appendFile(ringFileName(stem, 6), Buffer.concat([HEADER, records(12, 12)]));
    s.endCapture();
    await until(() => s.end() !== undefined);
    const body = s.body();
    const has9 = body.length === Buffer.concat([records(5, 8), records(9, 12)]).length;
    // Record 9 is there only if the stream reached file 4 before it was deleted.
    expect(body).toEqual(
      has9
        ? Buffer.concat([records(5, 8), records(9, 12)])
        : Buffer.concat([records(5, 8), records(10, 12)]),
    );
    expect(s.frames.filter((f) => f.equals(HEADER))).toHaveLength(1);
    expect(s.end()).toMatchObject({ packets: has9 ? 8 : 7, dropped: 0 });
  });

  it('a channel that falls behind: records skipped and counted, never more than the bound waits', async () => {
    const file = path.join(dir, 'slow.cap');
    await writeFile(file, HEADER);
    const pending: (() => void)[] = [];
    let inFlight = 0;
    let maxInFlight = 0;
    const s = collect(
      { kind: 'file', path: file },
      {
        maxBufferedBytes: 4096,
        sendBinary: (frame) => {
          s.frames.push(Buffer.from(frame.subarray(36)));
          inFlight += frame.length;
          maxInFlight = Math.max(maxInFlight, inFlight);
          return new Promise((resolve) =>
            pending.push(() => {
              inFlight -= frame.length;
              resolve(true);
            }),
          );
        },
      },
    );
    await until(() => s.frames.length === 1);
    // The channel is stuck: 2,000 records are written.
    for (let n = 1; n <= 2000; n += 100) {
      await appendFile(file, records(n, n + 99));
      await new Promise((r) => setTimeout(r, 5));
    }
    await new Promise((r) => setTimeout(r, 100));
    expect(maxInFlight).toBeLessThanOrEqual(4096 + 36 + 256 * 1024);
    const statsWhileStuck = s.messages.filter((m) => m.type === 'streamStats').at(-1);
    expect(statsWhileStuck).toMatchObject({ type: 'streamStats' });
    // The channel recovers; later records flow again.
    for (const release of pending.splice(0)) release();
    await appendFile(file, records(2001, 2010));
    await until(() => s.body().subarray(-record(2010).length).equals(record(2010)));
    s.endCapture();
    await until(() => s.end() !== undefined);
    const end = s.end() as Extract<AgentMessage, { type: 'streamEnd' }>;
    expect(end.dropped).toBeGreaterThan(0);
    expect(end.packets + end.dropped).toBe(2010);
    // What was sent is whole records in file order.
    let offset = 0;
    let last = 0;
    let count = 0;
    const body = s.body();
    while (offset < body.length) {
      const n = body.readUInt32LE(offset) - 1_767_225_600;
      expect(n).toBeGreaterThan(last);
      last = n;
      count++;
      offset += 16 + body.readUInt32LE(offset + 8);
    }
    expect(offset).toBe(body.length);
    expect(count).toBe(end.packets);
  });

  it('a channel that is gone ends the stream without a word', async () => {
    const file = path.join(dir, 'gone.cap');
    await writeFile(file, HEADER);
    const s = collect({ kind: 'file', path: file }, { sendBinary: () => Promise.resolve(false) });
    await until(() => s.closed());
    expect(s.end()).toBeUndefined();
  });
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
    const channel = {};
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
    const request = (message: Parameters<typeof handleStreamRequest>[1]) =>
      handleStreamRequest(channel, message, {
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
      request,
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
    await new Promise((r) => setTimeout(r, 100));
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
});
