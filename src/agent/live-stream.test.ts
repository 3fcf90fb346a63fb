/**
 * Live streams on hand-written files: whole records only (a record written in pieces goes out
 * once it is whole), the header once, ring files followed in order (also past a deleted one),
 * records skipped and counted while the channel is behind, and the end. The stream's timers run
 * on a manual clock: each `poll()` is one look at the files, so no test waits for a timer.
 */
import { randomUUID } from 'node:crypto';
import { appendFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../test/support/manual-clock.js';
import { HEADER, record, records } from '../../test/support/pcap-records.js';
import { ringFileName } from '../capture/ring-buffer.js';
import type { AgentMessage } from '../model/channel.js';
import { startLiveStream, type LiveStreamOptions, type StreamSource } from './live-stream.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'wirewatch-live-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const POLL_MS = 10;
const STATS_MS = 1000;

/** A stream whose frames and messages are collected, on a manual clock. */
function collect(source: StreamSource, overrides: Partial<LiveStreamOptions> = {}) {
  const streamId = randomUUID();
  const frames: Buffer[] = [];
  const messages: AgentMessage[] = [];
  const clock = new ManualClock();
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
    pollMs: POLL_MS,
    statsIntervalMs: STATS_MS,
    onClosed: () => (closed = true),
    clock,
    ...overrides,
  });
  const end = () => messages.find((m) => m.type === 'streamEnd');
  /** One look at the files: runs the poll due now and waits until it has finished. */
  const poll = async () => {
    const before = clock.scheduled;
    clock.advance(POLL_MS);
    // A finished look arms the next one; the last one ends the stream instead.
    const deadline = Date.now() + 20_000;
    while (clock.scheduled === before && !closed) {
      if (Date.now() > deadline) throw new Error('the poll did not finish');
      await new Promise((r) => setImmediate(r));
    }
  };
  /** Looks at the files until `check` holds. */
  const pollUntil = async (check: () => boolean) => {
    for (let i = 0; !check(); i++) {
      if (i > 10_000) throw new Error('condition not met');
      await poll();
    }
  };
  return {
    stream,
    clock,
    frames,
    messages,
    endCapture,
    end,
    poll,
    pollUntil,
    closed: () => closed,
    /** Everything after the header frame. */
    body: () => Buffer.concat(frames.slice(1)),
  };
}

describe('live stream', () => {
  it('single file: header once, then only whole records written from now on, then the end', async () => {
    const file = path.join(dir, 'one.cap');
    await writeFile(file, Buffer.concat([HEADER, records(1, 3)]));
    const s = collect({ kind: 'file', path: file });
    await s.pollUntil(() => s.frames.length === 1);
    expect(s.frames[0]).toEqual(HEADER);
    // Records 4..40 arrive in pieces cut anywhere, as tcpdump's 4 KiB writes cut them.
    const later = records(4, 40);
    for (let at = 0; at < later.length; at += 37) {
      await appendFile(file, later.subarray(at, at + 37));
      await s.poll();
    }
    await s.pollUntil(() => s.body().length === later.length);
    expect(s.body()).toEqual(later);
    // Stats every statsIntervalMs while the stream runs.
    s.clock.advance(STATS_MS);
    expect(s.messages.filter((m) => m.type === 'streamStats').at(-1)).toEqual({
      type: 'streamStats',
      streamId: s.stream.streamId,
      packets: 37,
      dropped: 0,
      lagMs: 0,
    });
    // Every frame holds whole records.
    for (const frame of s.frames.slice(1)) {
      let offset = 0;
      while (offset < frame.length) offset += 16 + frame.readUInt32LE(offset + 8);
      expect(offset).toBe(frame.length);
    }
    await appendFile(file, records(41, 42));
    s.endCapture();
    await s.pollUntil(() => s.end() !== undefined);
    expect(s.end()).toEqual({
      type: 'streamEnd',
      streamId: s.stream.streamId,
      packets: 39,
      dropped: 0,
    });
    expect(s.body()).toEqual(records(4, 42));
    expect(s.closed()).toBe(true);
  });

  it('a file not written at the first look is streamed from its first record', async () => {
    const file = path.join(dir, 'late.cap');
    const s = collect({ kind: 'file', path: file });
    for (let i = 0; i < 5; i++) await s.poll();
    expect(s.frames).toHaveLength(0);
    // tcpdump's first buffer: part of the header only.
    await writeFile(file, HEADER.subarray(0, 20));
    for (let i = 0; i < 5; i++) await s.poll();
    expect(s.frames).toHaveLength(0);
    await appendFile(file, Buffer.concat([HEADER.subarray(20), record(1)]));
    await s.pollUntil(() => s.frames.length === 2);
    expect(s.frames[0]).toEqual(HEADER);
    await appendFile(file, record(2));
    await s.pollUntil(() => s.body().length === records(1, 2).length);
    expect(s.body()).toEqual(records(1, 2));
    s.stream.stop();
    await s.pollUntil(() => s.end() !== undefined);
    expect(s.end()).toMatchObject({ packets: 2, dropped: 0 });
  });

  it('ring: no file at the first look, then several: from the oldest', async () => {
    const stem = path.join(dir, 'new-ring.cap');
    const s = collect({ kind: 'ring', stem });
    for (let i = 0; i < 5; i++) await s.poll();
    await writeFile(ringFileName(stem, 1), Buffer.concat([HEADER, records(1, 2)]));
    await writeFile(ringFileName(stem, 2), Buffer.concat([HEADER, records(3, 3)]));
    await s.pollUntil(() => s.body().length === records(1, 3).length);
    s.endCapture();
    await s.pollUntil(() => s.end() !== undefined);
    expect(s.body()).toEqual(records(1, 3));
    expect(s.end()).toMatchObject({ packets: 3, dropped: 0 });
  });

  it('ring: follows stem_N in order, sends the header once, and passes a deleted file', async () => {
    const stem = path.join(dir, 'ring.cap');
    await writeFile(ringFileName(stem, 1), Buffer.concat([HEADER, records(1, 2)]));
    await writeFile(ringFileName(stem, 2), Buffer.concat([HEADER, records(3, 4)]));
    const s = collect({ kind: 'ring', stem });
    await s.pollUntil(() => s.frames.length === 1);
    // It begins after what the newest file (2) holds.
    await appendFile(ringFileName(stem, 2), records(5, 6));
    await writeFile(ringFileName(stem, 3), HEADER);
    await appendFile(ringFileName(stem, 3), records(7, 8));
    await s.pollUntil(() => s.body().length === records(5, 8).length);
    // Files 4 and 5 appear; 4 is deleted before the stream gets there (a small ring).
    await writeFile(ringFileName(stem, 4), Buffer.concat([HEADER, records(9, 9)]));
    await rm(ringFileName(stem, 3));
    await rm(ringFileName(stem, 4));
    await writeFile(ringFileName(stem, 5), Buffer.concat([HEADER, records(10, 11)]));
    // A file created whose header is not written yet is waited for.
    await writeFile(ringFileName(stem, 6), '');
    for (let i = 0; i < 5; i++) await s.poll();
    await appendFile(ringFileName(stem, 6), Buffer.concat([HEADER, records(12, 12)]));
    s.endCapture();
    await s.pollUntil(() => s.end() !== undefined);
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
    await s.pollUntil(() => s.frames.length === 1);
    // The channel is stuck: 2,000 records are written.
    for (let n = 1; n <= 2000; n += 100) {
      await appendFile(file, records(n, n + 99));
      await s.poll();
    }
    for (let i = 0; i < 10; i++) await s.poll();
    s.clock.advance(STATS_MS);
    expect(maxInFlight).toBeLessThanOrEqual(4096 + 36 + 256 * 1024);
    const statsWhileStuck = s.messages.filter((m) => m.type === 'streamStats').at(-1);
    expect(statsWhileStuck).toMatchObject({ type: 'streamStats' });
    // The channel recovers; later records flow again.
    for (const release of pending.splice(0)) release();
    await appendFile(file, records(2001, 2010));
    await s.pollUntil(() => s.body().subarray(-record(2010).length).equals(record(2010)));
    s.endCapture();
    await s.pollUntil(() => s.end() !== undefined);
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
    await s.pollUntil(() => s.closed());
    expect(s.end()).toBeUndefined();
  });
});
