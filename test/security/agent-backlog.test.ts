/**
 * An agent's backlog (messages read, not yet handled by the control plane) is bounded in bytes,
 * per VM and across its connections: a `hello` of 10,000 unknown sessions takes the control
 * plane about half a second, so an agent that sends them faster than that (its byte budget is
 * 64 MiB/s) would otherwise pile up to 1000 parsed 8 MiB messages in the server's memory — and
 * reconnecting started a fresh pile while the old one was still being worked through.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { CHANNEL_MAX_PAYLOAD_BYTES, CHANNEL_PROTOCOL_VERSION } from '../../src/model/channel.js';
import { DEFAULT_AGENT_CHANNEL_LIMITS } from '../../src/server/agent-hub.js';
import { createTenant, startTestServer, waitFor, type TestServer } from '../lab/control-plane.js';
import { SyntheticAgent } from '../lab/synthetic-agent.js';

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer();
});
afterAll(async () => {
  await t?.close();
});

/** About 7 MB: 10,000 Stopped sessions the server never heard of. */
function bigHello(): string {
  const pad = 'x'.repeat(600);
  const sessions = Array.from({ length: 10_000 }, (_, i) => ({
    sessionId: randomUUID(),
    state: 'Stopped',
    files: [`/var/captures/${pad}${i}.cap`],
  }));
  return JSON.stringify({
    type: 'hello',
    protocolVersion: CHANNEL_PROTOCOL_VERSION,
    agentVersion: 'x',
    hostname: 'h',
    captureRoot: '/var/captures',
    sessions,
  });
}

it('holds an agent that sends faster than the control plane handles: the backlog stays bounded in bytes, also across reconnects', async () => {
  const tenant = await createTenant(t, 'backlog');
  const agent = new SyntheticAgent({
    serverUrl: t.url,
    enrollToken: tenant.enrollToken,
    subscriptionId: tenant.subscriptionId,
    resourceGroup: 'rg',
    name: 'piler',
    location: 'westeurope',
  });
  const { agentId } = await agent.enroll();
  const text = bigHello();
  expect(text.length).toBeLessThan(CHANNEL_MAX_PAYLOAD_BYTES);
  let most = 0;
  const queueFullBefore = t.server.hub.counters.queueFull;
  const sampler = setInterval(() => {
    most = Math.max(most, t.server.hub.backlogBytes(agentId));
  }, 5);
  try {
    // Two connections, one after the other, each sending four without waiting.
    for (let round = 0; round < 2; round++) {
      await agent.connect();
      await Promise.all(Array.from({ length: 4 }, () => agent.sendRaw(text)));
      await new Promise((r) => setTimeout(r, 300));
      await agent.disconnect();
    }
    await t.server.hub.drain();
  } finally {
    clearInterval(sampler);
  }
  // The agent was held back (its socket not read) in both rounds, not only at 1000 messages.
  expect(t.server.hub.counters.queueFull - queueFullBefore).toBeGreaterThanOrEqual(2);
  const cap = DEFAULT_AGENT_CHANNEL_LIMITS.maxQueuedBytes;
  // Paused once the backlog reached the cap: at most one message more than the cap is held.
  expect(most).toBeGreaterThan(0);
  expect(most).toBeLessThanOrEqual(cap + CHANNEL_MAX_PAYLOAD_BYTES);
  // Everything read is handled in the end (a closed connection's messages too).
  await waitFor(
    () => Promise.resolve(t.server.hub.backlogBytes(agentId)),
    (bytes) => bytes === 0,
  );
  await agent.close();
});
