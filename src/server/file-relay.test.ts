/**
 * FileRelay's windowing, ordering, back-pressure and failures, against an in-process agent that
 * answers `readFile` from a buffer (the real agent over a real channel is covered in
 * test/server/capture-content.test.ts; these are the faults and timings it cannot cause).
 */
import { randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import type { ServerMessage } from '../model/channel.js';
import { WirewatchError } from '../model/errors.js';
import { FileRelay } from './file-relay.js';

type ReadFile = Extract<ServerMessage, { type: 'readFile' }>;

const VM = 'vm-1';
const SESSION = '00000000-0000-4000-8000-000000000001';

interface FakeAgentOptions {
  /** Bytes per frame. */
  readonly chunk?: number;
  /** Answers requests in reverse order of arrival (frames of later windows first). */
  readonly reverse?: boolean;
  /** Answer each request after this many ms (0: on the next tick). */
  readonly delayMs?: number;
  /** Turns an answer into something else (faults). */
  readonly answer?: (request: ReadFile, send: Answerer) => boolean;
}

interface Answerer {
  frame(data: Buffer): void;
  end(size?: number, error?: { code: string; message: string }): void;
}

/** A relay wired to an agent holding `file`; records what the server sent. */
function setup(file: Buffer, options: FakeAgentOptions = {}, windowBytes = 64 * 1024) {
  const sent: ServerMessage[] = [];
  let queue: ReadFile[] = [];
  let connected = true;
  const relay: FileRelay = new FileRelay({
    windowBytes,
    send: (vmId, message) => {
      if (!connected || vmId !== VM) return false;
      sent.push(message);
      if (message.type === 'readFile') {
        queue.push(message);
        setTimeout(drain, options.delayMs ?? 0);
      }
      return true;
    },
  });
  function drain(): void {
    const requests = options.reverse ? queue.reverse() : queue;
    queue = [];
    for (const request of requests) {
      const answerer: Answerer = {
        frame: (data) =>
          relay.data(VM, Buffer.concat([Buffer.from(request.requestId, 'latin1'), data])),
        end: (size, error) =>
          relay.end(VM, {
            type: 'readFileEnd',
            requestId: request.requestId,
            ...(size === undefined ? {} : { size }),
            ...(error === undefined ? {} : { error }),
          }),
      };
      if (options.answer?.(request, answerer)) continue;
      const start = Math.min(request.offset, file.length);
      const end = Math.min(
        file.length,
        request.length === undefined ? file.length : start + request.length,
      );
      const chunk = options.chunk ?? 10_000;
      for (let p = start; p < end; p += chunk) {
        answerer.frame(file.subarray(p, Math.min(end, p + chunk)));
      }
      answerer.end(file.length);
    }
  }
  return {
    relay,
    sent,
    reads: () => sent.filter((m): m is ReadFile => m.type === 'readFile'),
    disconnect: () => {
      connected = false;
      relay.disconnected(VM);
    },
  };
}

async function collect(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** Same bytes? (toEqual on megabyte buffers compares element by element, for seconds.) */
function same(a: Buffer, b: Buffer): boolean {
  return a.equals(b);
}

async function failure(stream: Readable): Promise<WirewatchError> {
  try {
    await collect(stream);
  } catch (err) {
    expect(err).toBeInstanceOf(WirewatchError);
    return err as WirewatchError;
  }
  throw new Error('the stream did not fail');
}

const ref = { sessionId: SESSION, path: '/var/captures/a.cap' };

describe('FileRelay', () => {
  const file = randomBytes(1_000_003);

  it('streams a whole file, a range, and an empty tail, in windows', async () => {
    for (const reverse of [false, true]) {
      const { relay, reads } = setup(file, { reverse });
      expect(same(await collect(relay.open(VM, { ...ref, offset: 0 })), file)).toBe(true);
      expect(reads().length).toBeGreaterThan(10);
      expect(reads().every((r) => (r.length ?? Infinity) <= 64 * 1024)).toBe(true);
      expect(
        same(
          await collect(relay.open(VM, { ...ref, offset: 123_456, length: 500_000 })),
          file.subarray(123_456, 623_456),
        ),
      ).toBe(true);
      expect(
        same(await collect(relay.open(VM, { ...ref, offset: file.length })), Buffer.alloc(0)),
      ).toBe(true);
      expect(
        same(await collect(relay.open(VM, { ...ref, offset: 5, length: 0 })), Buffer.alloc(0)),
      ).toBe(true);
      expect(relay.pendingCount).toBe(0);
    }
  });

  it('keeps the order when frames arrive late or one byte at a time', async () => {
    const small = randomBytes(5000);
    const { relay } = setup(small, { chunk: 1, delayMs: 5 }, 1024);
    expect(same(await collect(relay.open(VM, { ...ref, offset: 0 })), small)).toBe(true);
  });

  it('tells the size with a read of zero bytes', async () => {
    const { relay, reads } = setup(file);
    expect(await relay.size(VM, ref)).toBe(file.length);
    expect(reads()).toEqual([expect.objectContaining({ offset: 0, length: 0 })]);
  });

  it('asks for no more than two windows while the consumer does not read', async () => {
    const { relay, reads } = setup(file);
    const stream = relay.open(VM, { ...ref, offset: 0, length: file.length });
    stream.pause();
    stream.read(0); // starts the first request
    await new Promise((r) => setTimeout(r, 100));
    expect(reads().length).toBeLessThanOrEqual(3);
    expect(stream.readableLength).toBeLessThanOrEqual(3 * 64 * 1024);
    expect(same(await collect(stream), file)).toBe(true);
  });

  it('cancels what is in flight when the consumer goes away', async () => {
    const { relay, sent } = setup(file, { delayMs: 50 });
    const stream = relay.open(VM, { ...ref, offset: 0, length: file.length });
    stream.read(0);
    await new Promise((r) => setTimeout(r, 10));
    stream.destroy();
    await new Promise((r) => setTimeout(r, 100));
    expect(sent.filter((m) => m.type === 'readFileCancel').length).toBeGreaterThan(0);
    expect(relay.pendingCount).toBe(0);
  });

  it('fails with AgentNotConnected when the agent is away or goes away', async () => {
    const away = setup(file);
    away.disconnect();
    expect((await failure(away.relay.open(VM, { ...ref, offset: 0 }))).code).toBe(
      'AgentNotConnected',
    );
    await expect(away.relay.size(VM, ref)).rejects.toMatchObject({ code: 'AgentNotConnected' });

    const leaving = setup(file, { delayMs: 1000 });
    const stream = leaving.relay.open(VM, { ...ref, offset: 0 });
    stream.read(0);
    setTimeout(() => leaving.disconnect(), 20);
    const error = await failure(stream);
    expect(error.code).toBe('AgentNotConnected');
    expect(error.status).toBe(503);
  });

  it("maps the agent's errors: a missing file is gone (410), anything else unavailable (502)", async () => {
    const refuse = (code: string) =>
      setup(file, {
        answer: (_r, a) => {
          a.end(undefined, { code, message: `/secret/host/detail: ${code}` });
          return true;
        },
      });
    const gone = await failure(refuse('CaptureFileGone').relay.open(VM, { ...ref, offset: 0 }));
    expect([gone.code, gone.status]).toEqual(['CaptureFileGone', 410]);
    const refused = await failure(
      refuse('InvalidCapturePath').relay.open(VM, { ...ref, offset: 0 }),
    );
    expect([refused.code, refused.status]).toEqual(['CaptureFileUnavailable', 502]);
    expect(refused.message).toContain('InvalidCapturePath');
    expect(refused.message).not.toContain('/secret/host');
    await expect(refuse('LocalFileFailed').relay.size(VM, ref)).rejects.toMatchObject({
      code: 'CaptureFileUnavailable',
    });
  });

  it('fails a read that gets more than it asked for, or less than the file should hold', async () => {
    const more = setup(file, {
      answer: (r, a) => {
        a.frame(Buffer.alloc((r.length ?? 0) + 1));
        a.end(file.length);
        return true;
      },
    });
    expect((await failure(more.relay.open(VM, { ...ref, offset: 0 }))).message).toContain(
      'more than',
    );
    // The file was cut after its size was taken.
    const { relay } = setup(file.subarray(0, 100_000));
    const error = await failure(relay.open(VM, { ...ref, offset: 0, length: file.length }));
    expect(error.code).toBe('CaptureFileUnavailable');
    expect(error.message).toContain('changed');
  });

  it('fails a read the agent never answers, after the idle timeout', async () => {
    const sent: ServerMessage[] = [];
    const relay = new FileRelay({ idleTimeoutMs: 50, send: (_v, m) => (sent.push(m), true) });
    const error = await failure(relay.open(VM, { ...ref, offset: 0 }));
    expect(error.code).toBe('CaptureFileUnavailable');
    expect(sent.map((m) => m.type)).toEqual(['readFile', 'readFileCancel']);
  });

  it("drops frames of another agent's requests and of unknown ones", async () => {
    const { relay, reads } = setup(file, { delayMs: 20 });
    const stream = relay.open(VM, { ...ref, offset: 0, length: 1000 });
    stream.read(0);
    const id = reads()[0]!.requestId;
    relay.data('vm-2', Buffer.concat([Buffer.from(id, 'latin1'), Buffer.alloc(10)]));
    relay.end('vm-2', { type: 'readFileEnd', requestId: id, size: 1 });
    relay.data(VM, Buffer.from('short'));
    expect(same(await collect(stream), file.subarray(0, 1000))).toBe(true);
  });
});
