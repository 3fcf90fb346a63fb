/**
 * Enrollment is the one route that reads a body before any credential is checked: an
 * enrollment token was looked at only once the whole body (up to the server's 1 MiB body limit)
 * had arrived, and no request had a deadline, so anyone could open connections to
 * POST /api/v1/agent/enroll, send ~1 MiB and hold it there for ever (200 such connections: +200
 * MB of server memory, none ever closed). The token is now checked before the body is read, an
 * enrollment body is at most 64 KiB, and every request must arrive whole within a deadline.
 */
import net from 'node:net';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { CHANNEL_PATH, ENROLL_PATH } from '../../src/model/channel.js';
import {
  API,
  capturePath,
  createTenant,
  startTestServer,
  type TestServer,
} from '../lab/control-plane.js';

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer();
});
afterAll(async () => {
  await t?.close();
});

/** Sends the head and part of a body, never the rest; resolves with what the server answers. */
function partialPost(
  token: string,
  contentLength: number,
  sent: number,
  waitMs = 3000,
  request = `POST ${ENROLL_PATH}`,
) {
  const { port } = new URL(t.url);
  return new Promise<{ status: string; closed: boolean }>((resolve) => {
    const socket = net.connect(Number(port), '127.0.0.1');
    let got = '';
    let closed = false;
    socket.on('data', (d) => (got += d.toString('latin1')));
    socket.on('error', () => undefined);
    socket.on('close', () => (closed = true));
    socket.write(
      `${request} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n` +
        `Authorization: Bearer ${token}\r\nContent-Length: ${contentLength}\r\n\r\n`,
    );
    socket.write(Buffer.alloc(sent, 0x20));
    setTimeout(() => {
      resolve({ status: got.split('\r\n')[0] ?? '', closed });
      socket.destroy();
    }, waitMs);
  });
}

it('refuses an enrollment with a token that is no enrollment token before reading its body', async () => {
  const answer = await partialPost('wwenroll_not_a_token', 1024 * 1024, 512 * 1024);
  expect(answer.status).toBe('HTTP/1.1 401 Unauthorized');
});

it('refuses an enrollment body larger than an enrollment needs, even with a valid token', async () => {
  const tenant = await createTenant(t, 'slow-enroll');
  const answer = await partialPost(tenant.enrollToken, 1024 * 1024, 1024);
  expect(answer.status).toBe('HTTP/1.1 413 Payload Too Large');
});

it('answers a method no open path has (POST /healthz, POST on the agent channel) without reading its body', async () => {
  for (const request of ['POST /healthz', 'PUT /healthz', `POST ${CHANNEL_PATH}`]) {
    const answer = await partialPost('', 1024 * 1024, 512 * 1024, 2000, request);
    expect(answer.status, request).toBe('HTTP/1.1 404 Not Found');
  }
});

it("answers a Reader's or another tenant's write before its body arrives, and hangs up", async () => {
  const tenant = await createTenant(t, 'early-403');
  const stranger = await createTenant(t, 'early-404');
  const capture = `PUT ${capturePath(tenant.subscriptionId, 'NetworkWatcherRG', 'NetworkWatcher_westeurope', 'pc-early')}?api-version=${API}`;
  const tokens = `POST /api/v1/subscriptions/${tenant.subscriptionId}/tokens`;
  const cases: [string, string, string][] = [
    [tenant.reader, capture, 'HTTP/1.1 403 Forbidden'],
    [stranger.contributor, capture, 'HTTP/1.1 404 Not Found'],
    [tenant.contributor, tokens, 'HTTP/1.1 403 Forbidden'],
    [stranger.owner, tokens, 'HTTP/1.1 404 Not Found'],
    [tenant.owner, 'POST /api/v1/subscriptions', 'HTTP/1.1 403 Forbidden'],
  ];
  const answers = await Promise.all(
    cases.map(([token, request]) => partialPost(token, 1024 * 1024, 1024, 2000, request)),
  );
  answers.forEach((answer, i) => {
    const [, request, status] = cases[i]!;
    expect(answer.status, request).toBe(status);
    expect(answer.closed, request).toBe(true);
  });
  // A caller the route admits waits for the body (nothing answered yet).
  const allowed = await partialPost(tenant.contributor, 1024 * 1024, 1024, 1000, capture);
  expect(allowed.status).toBe('');
  expect(allowed.closed).toBe(false);
});

it('gives every request a deadline to arrive whole', () => {
  const server = t.server.app.server;
  expect(server.requestTimeout).toBeGreaterThan(0);
  expect(server.requestTimeout).toBeLessThanOrEqual(60_000);
});
