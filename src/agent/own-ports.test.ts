import { randomInt } from 'node:crypto';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { OwnPorts, reserveOwnPorts } from './own-ports.js';

const servers: net.Server[] = [];

async function listen(port: number, host = '127.0.0.1'): Promise<net.Server> {
  const server = net.createServer((socket) => socket.end());
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, resolve);
  });
  servers.push(server);
  return server;
}

afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
});

function connect(ports: OwnPorts, port: number): Promise<Duplex & net.Socket> {
  return new Promise((resolve, reject) =>
    ports.connect({ host: '127.0.0.1', port }, false, (err, socket) =>
      err ? reject(err) : resolve(socket as Duplex & net.Socket),
    ),
  );
}

describe('the agent’s own ports', () => {
  it('are the 16 ports above the ephemeral range, past a port a program listens on', async () => {
    const last = randomInt(61_000, 64_000);
    await listen(last + 3, '0.0.0.0');
    const ports = await reserveOwnPorts({ ephemeral: { first: 32768, last } });
    expect(ports.range).toEqual({ first: last + 4, last: last + 19 });
  });

  it('lie below the range when there is no room above, and are absent when there is none', async () => {
    const below = await reserveOwnPorts({ ephemeral: { first: 40000, last: 65530 } });
    expect(below.range).toEqual({ first: 39984, last: 39999 });
    const none = await reserveOwnPorts({ ephemeral: { first: 1024, last: 65535 } });
    expect(none.range).toBeUndefined();
  });

  it('connect from the pool, take the next port when one is taken, and fall back to an ephemeral one', async () => {
    const server = await listen(0);
    const target = (server.address() as net.AddressInfo).port;
    const first = randomInt(61_000, 64_000);
    const ports = new OwnPorts({ first, last: first + 1 });
    // Two connections to the same server: the second cannot have the first one's 4-tuple.
    const a = await connect(ports, target);
    const b = await connect(ports, target);
    expect(new Set([a.localPort, b.localPort])).toEqual(new Set([first, first + 1]));
    // Both ports are taken for this server: the third connection still gets through.
    const c = await connect(ports, target);
    expect(c.localPort).not.toBe(first);
    expect(c.localPort).not.toBe(first + 1);
    for (const s of [a, b, c]) s.destroy();
  });
});
