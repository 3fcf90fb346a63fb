/**
 * `--tls self-signed` for a server that agents on other hosts reach: the certificate a real
 * server serves must verify, with its CA, for this host's name and non-loopback addresses, a
 * specific listen address and `--tls-san` names — checked with Node's own verification
 * (tls.connect and tls.checkServerIdentity) against the certificate the server really sends.
 * Connections stay on loopback; the name a client asks for is given as the TLS servername.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os, { tmpdir } from 'node:os';
import path from 'node:path';
import { checkServerIdentity, connect, type PeerCertificate } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type RunningServer } from '../../src/server/start-server.js';

let root: string;

beforeAll(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'ww-remote-tls-'));
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

/** A TLS handshake with the server on loopback, asking for `servername`, trusting only `ca`. */
function handshake(
  server: RunningServer,
  ca: Buffer,
  servername: string,
): Promise<PeerCertificate> {
  const port = Number(new URL(server.url).port);
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, ca, servername }, () => {
      const cert = socket.getPeerCertificate();
      socket.end();
      resolve(cert);
    });
    socket.on('error', reject);
  });
}

/** This host's addresses a remote agent could use: not internal, not IPv6 link-local. */
function hostAddresses(): string[] {
  return Object.values(os.networkInterfaces())
    .flatMap((list) => list ?? [])
    .filter((i) => !i.internal && !/^fe[89ab]/i.test(i.address))
    .map((i) => i.address);
}

describe('--tls self-signed for remote agents', () => {
  let server: RunningServer;
  let ca: Buffer;

  beforeAll(async () => {
    server = await startServer({
      dataDir: path.join(root, 'server'),
      listen: '127.0.0.1:0',
      tls: 'self-signed',
      tlsSans: ['wirewatch.test', '203.0.113.7', 'WireWatch-Alias.Example.'],
      logger: false,
    });
    ca = await readFile(server.caPath!);
  });

  afterAll(async () => {
    await server?.close();
  });

  it('verifies for the --tls-san names and addresses', async () => {
    const cert = await handshake(server, ca, 'wirewatch.test');
    expect(checkServerIdentity('wirewatch-alias.example', cert)).toBeUndefined();
    expect(checkServerIdentity('203.0.113.7', cert)).toBeUndefined();
    // Still for loopback, and for nothing else.
    expect(checkServerIdentity('localhost', cert)).toBeUndefined();
    expect(checkServerIdentity('127.0.0.1', cert)).toBeUndefined();
    expect(checkServerIdentity('example.com', cert)).toBeInstanceOf(Error);
    await expect(handshake(server, ca, 'example.com')).rejects.toMatchObject({
      code: 'ERR_TLS_CERT_ALTNAME_INVALID',
    });
  });

  it("verifies for this host's name and every non-loopback address", async () => {
    const cert = await handshake(server, ca, 'localhost');
    const hostname = os.hostname().toLowerCase();
    expect(checkServerIdentity(hostname, cert)).toBeUndefined();
    const addresses = hostAddresses();
    for (const address of addresses) {
      expect(checkServerIdentity(address, cert), address).toBeUndefined();
    }
    expect(server.tlsNames).toContain(`DNS:${hostname}`);
  });

  it('re-issues the certificate from the same CA when the names change, and keeps it otherwise', async () => {
    const dir = path.join(root, 'reissue');
    const start = (sans: string[]) =>
      startServer({
        dataDir: dir,
        listen: '127.0.0.1:0',
        tls: 'self-signed',
        tlsSans: sans,
        logger: false,
      });
    const first = await start(['a.example']);
    const caBefore = await readFile(first.caPath!);
    const certBefore = await readFile(path.join(dir, 'tls', 'server.crt'));
    await first.close();

    const same = await start(['a.example']);
    expect(await readFile(path.join(dir, 'tls', 'server.crt'))).toEqual(certBefore);
    await same.close();

    const second = await start(['a.example', 'b.example']);
    try {
      expect(await readFile(second.caPath!)).toEqual(caBefore);
      expect(await readFile(path.join(dir, 'tls', 'server.crt'))).not.toEqual(certBefore);
      const cert = await handshake(second, caBefore, 'b.example');
      expect(checkServerIdentity('a.example', cert)).toBeUndefined();
    } finally {
      await second.close();
    }
  });

  it('adds a specific listen address', async () => {
    const other = await startServer({
      dataDir: path.join(root, 'listen'),
      listen: '127.0.0.2:0',
      tls: 'self-signed',
      logger: false,
    });
    try {
      expect(other.tlsNames).toContain('IP:127.0.0.2');
    } finally {
      await other.close();
    }
  });

  it('refuses a --tls-san that is not a name or address, and --tls-san without --tls self-signed', async () => {
    for (const bad of ['bad name', 'under_score.example', '-x.example', 'a..b', 'fe80::1%eth0']) {
      await expect(
        startServer({
          dataDir: path.join(root, 'bad'),
          listen: '127.0.0.1:0',
          tls: 'self-signed',
          tlsSans: [bad],
          logger: false,
        }),
      ).rejects.toMatchObject({ code: 'InvalidRequestContent', target: 'tls-san' });
    }
    await expect(
      startServer({
        dataDir: path.join(root, 'bad'),
        listen: '127.0.0.1:0',
        tlsSans: ['x.example'],
        logger: false,
      }),
    ).rejects.toThrow(/--tls self-signed/);
  });
});
