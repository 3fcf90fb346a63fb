import { execFile } from 'node:child_process';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { createServer, request } from 'node:https';
import type { Server } from 'node:https';
import { createServer as createTcpServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureSelfSignedTls, loadTlsFiles } from './tls.js';
import type { TlsMaterial } from './tls.js';

const execFileAsync = promisify(execFile);
const DAY_MS = 24 * 60 * 60 * 1000;

const tempDirs: string[] = [];
async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'wirewatch-tls-test-'));
  tempDirs.push(dir);
  return dir;
}
afterAll(async () => {
  await Promise.all(tempDirs.map((dir) => rm(dir, { recursive: true, force: true })));
});

async function openssl(...args: string[]): Promise<string> {
  const { stdout } = await execFileAsync('openssl', args);
  return stdout;
}

async function mode(path: string): Promise<number> {
  return (await stat(path)).mode & 0o777;
}

async function listen(material: TlsMaterial, host: string): Promise<Server> {
  const server = createServer({ key: material.key, cert: material.cert }, (_req, res) => {
    res.end('ok');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, resolve);
  });
  return server;
}

async function close(server: Server): Promise<void> {
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

/** GET / over HTTPS; resolves the body or rejects with the TLS error. */
function get(
  server: Server,
  options: { host: string; servername?: string; ca?: Buffer },
): Promise<string> {
  const { port } = server.address() as AddressInfo;
  return new Promise((resolve, reject) => {
    // agent: false so that no pooled connection or cached session skips verification.
    const req = request({ ...options, port, path: '/', agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve(body));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

/** Whether ::1 can be bound here (containers without IPv6 cannot). */
async function hasIpv6Loopback(): Promise<boolean> {
  const server = createTcpServer();
  return new Promise((resolve) => {
    server.once('error', () => resolve(false));
    server.listen(0, '::1', () => server.close(() => resolve(true)));
  });
}

describe('ensureSelfSignedTls', () => {
  let dataDir: string;
  let tlsDir: string;
  let material: TlsMaterial;

  beforeAll(async () => {
    dataDir = await tempDir();
    tlsDir = join(dataDir, 'tls');
    material = await ensureSelfSignedTls(dataDir);
  });

  it('writes the CA and server files with the stated modes and no leftovers', async () => {
    expect(await mode(tlsDir)).toBe(0o700);
    expect(await mode(join(tlsDir, 'ca.key'))).toBe(0o600);
    expect(await mode(join(tlsDir, 'ca.crt'))).toBe(0o644);
    expect(await mode(join(tlsDir, 'server.key'))).toBe(0o600);
    expect(await mode(join(tlsDir, 'server.crt'))).toBe(0o644);
    // No temporary key or config file left behind, and no ca.srl from openssl.
    expect((await readdir(tlsDir)).sort()).toEqual([
      'ca.crt',
      'ca.key',
      'server.crt',
      'server.key',
    ]);
    expect(material.caPath).toBe(join(tlsDir, 'ca.crt'));
    expect(material.ca).toEqual(await readFile(material.caPath));
    expect(material.cert).toEqual(await readFile(join(tlsDir, 'server.crt')));
    expect(material.key).toEqual(await readFile(join(tlsDir, 'server.key')));
  });

  it('makes a 10-year P-256 CA with CA:TRUE and keyCertSign,cRLSign', async () => {
    const ca = new X509Certificate(material.ca);
    expect(ca.ca).toBe(true);
    expect(ca.subject).toMatch(/^CN=wirewatch local CA [0-9a-f]{8}$/);
    expect(ca.issuer).toBe(ca.subject);
    const days = (Date.parse(ca.validTo) - Date.parse(ca.validFrom)) / DAY_MS;
    expect(days).toBe(3650);
    const caKey = createPrivateKey(await readFile(join(tlsDir, 'ca.key')));
    expect(caKey.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
    const ext = await openssl(
      'x509',
      '-noout',
      '-ext',
      'basicConstraints,keyUsage',
      '-in',
      material.caPath,
    );
    expect(ext).toMatch(/Basic Constraints: critical\s+CA:TRUE/);
    expect(ext).toMatch(/Key Usage: critical\s+Certificate Sign, CRL Sign\s*$/);
  });

  it('makes a P-256 server certificate with the right SANs, usages and lifetime', async () => {
    const cert = new X509Certificate(material.cert);
    const ca = new X509Certificate(material.ca);
    expect(cert.ca).toBe(false);
    expect(cert.checkIssued(ca)).toBe(true);
    expect(cert.verify(ca.publicKey)).toBe(true);
    expect(createPrivateKey(material.key).asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
    const days = (Date.parse(cert.validTo) - Date.parse(cert.validFrom)) / DAY_MS;
    expect(days).toBeGreaterThan(700);
    expect(days).toBeLessThan(825);
    const serverCrt = join(tlsDir, 'server.crt');

    const san = await openssl('x509', '-noout', '-ext', 'subjectAltName', '-in', serverCrt);
    const names = san
      .split('\n')[1]!
      .split(',')
      .map((s) => s.trim());
    expect(names.sort()).toEqual([
      'DNS:localhost',
      'IP Address:0:0:0:0:0:0:0:1',
      'IP Address:127.0.0.1',
    ]);

    const ext = await openssl(
      'x509',
      '-noout',
      '-ext',
      'basicConstraints,extendedKeyUsage',
      '-in',
      serverCrt,
    );
    expect(ext).toMatch(/Basic Constraints: critical\s+CA:FALSE/);
    expect(ext).toMatch(/Extended Key Usage:\s+TLS Web Server Authentication\s*$/);
    expect(await openssl('verify', '-CAfile', material.caPath, serverCrt)).toContain(': OK');
  });

  it('serves HTTPS that a client trusting the CA accepts for localhost and 127.0.0.1', async () => {
    const server = await listen(material, '127.0.0.1');
    try {
      expect(
        await get(server, { host: '127.0.0.1', servername: 'localhost', ca: material.ca }),
      ).toBe('ok');
      expect(await get(server, { host: '127.0.0.1', ca: material.ca })).toBe('ok');
    } finally {
      await close(server);
    }
  });

  it('serves HTTPS that a client trusting the CA accepts for ::1', async (ctx) => {
    if (!(await hasIpv6Loopback())) ctx.skip('no IPv6 loopback on this machine');
    const server = await listen(material, '::1');
    try {
      expect(await get(server, { host: '::1', ca: material.ca })).toBe('ok');
    } finally {
      await close(server);
    }
  });

  it('is refused by a client that does not trust the CA, or asks for another name', async () => {
    const server = await listen(material, '127.0.0.1');
    try {
      await expect(
        get(server, { host: '127.0.0.1', servername: 'localhost' }),
      ).rejects.toMatchObject({ code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' });
      await expect(
        get(server, { host: '127.0.0.1', servername: 'example.com', ca: material.ca }),
      ).rejects.toMatchObject({ code: 'ERR_TLS_CERT_ALTNAME_INVALID' });
    } finally {
      await close(server);
    }
  });

  it('reuses the CA and the server certificate on later calls', async () => {
    const again = await ensureSelfSignedTls(dataDir);
    expect(again.ca).toEqual(material.ca);
    expect(again.cert).toEqual(material.cert);
    expect(again.key).toEqual(material.key);
  });
});

describe('ensureSelfSignedTls re-issuing', () => {
  it('re-issues a deleted server.crt from the same CA', async () => {
    const dataDir = await tempDir();
    const first = await ensureSelfSignedTls(dataDir);
    await unlink(join(dataDir, 'tls', 'server.crt'));
    const second = await ensureSelfSignedTls(dataDir);
    expect(second.ca).toEqual(first.ca);
    expect(second.cert).not.toEqual(first.cert);
    expect(
      await openssl('verify', '-CAfile', second.caPath, join(dataDir, 'tls', 'server.crt')),
    ).toContain(': OK');
    const server = await listen(second, '127.0.0.1');
    try {
      expect(await get(server, { host: '127.0.0.1', servername: 'localhost', ca: first.ca })).toBe(
        'ok',
      );
    } finally {
      await close(server);
    }
  });

  it('re-issues a server certificate that expires within 30 days', async () => {
    const dataDir = await tempDir();
    const tls = join(dataDir, 'tls');
    const first = await ensureSelfSignedTls(dataDir);
    // Replace the server certificate with one from the same CA and key that has 10 days left.
    const csr = join(tls, 'test.csr');
    await openssl(
      'req',
      '-new',
      '-key',
      join(tls, 'server.key'),
      '-subj',
      '/CN=localhost',
      '-out',
      csr,
    );
    const short = await openssl(
      'x509',
      '-req',
      '-in',
      csr,
      '-CA',
      first.caPath,
      '-CAkey',
      join(tls, 'ca.key'),
      '-set_serial',
      '7',
      '-days',
      '10',
    );
    await unlink(csr);
    await writeFile(join(tls, 'server.crt'), short);
    const second = await ensureSelfSignedTls(dataDir);
    expect(second.ca).toEqual(first.ca);
    expect(second.cert.toString()).not.toEqual(short);
    const days = (Date.parse(new X509Certificate(second.cert).validTo) - Date.now()) / DAY_MS;
    expect(days).toBeGreaterThan(700);
  });

  it('re-issues when server.key does not match server.crt (a crash between the two renames)', async () => {
    const dataDir = await tempDir();
    const tls = join(dataDir, 'tls');
    const first = await ensureSelfSignedTls(dataDir);
    await writeFile(join(tls, 'server.key'), await readFile(join(tls, 'ca.key')));
    const second = await ensureSelfSignedTls(dataDir);
    expect(second.ca).toEqual(first.ca);
    expect(new X509Certificate(second.cert).checkPrivateKey(createPrivateKey(second.key))).toBe(
      true,
    );
  });

  it('makes a new CA when ca.crt is missing (a crash while creating the CA)', async () => {
    const dataDir = await tempDir();
    const tls = join(dataDir, 'tls');
    const first = await ensureSelfSignedTls(dataDir);
    await unlink(join(tls, 'ca.crt'));
    const second = await ensureSelfSignedTls(dataDir);
    expect(second.ca).not.toEqual(first.ca);
    expect(await openssl('verify', '-CAfile', second.caPath, join(tls, 'server.crt'))).toContain(
      ': OK',
    );
  });

  it('keeps working without ca.key until the server certificate needs re-issuing', async () => {
    const dataDir = await tempDir();
    const tls = join(dataDir, 'tls');
    const first = await ensureSelfSignedTls(dataDir);
    await unlink(join(tls, 'ca.key'));
    const second = await ensureSelfSignedTls(dataDir);
    expect(second.cert).toEqual(first.cert);
    await unlink(join(tls, 'server.crt'));
    await expect(ensureSelfSignedTls(dataDir)).rejects.toThrow(/ca\.key is missing/);
    // The CA that clients trust is left alone.
    expect(await readFile(join(tls, 'ca.crt'))).toEqual(first.ca);
  });

  it('says to install openssl when it is missing', async () => {
    const dataDir = await tempDir();
    await expect(
      ensureSelfSignedTls(dataDir, { opensslPath: '/nonexistent/openssl' }),
    ).rejects.toThrow(/apt-get install -y openssl/);
    expect(await readdir(join(dataDir, 'tls'))).toEqual([]);
  });
});

describe('loadTlsFiles', () => {
  it('reads a matching certificate and key', async () => {
    const dataDir = await tempDir();
    const material = await ensureSelfSignedTls(dataDir);
    const files = await loadTlsFiles(
      join(dataDir, 'tls', 'server.crt'),
      join(dataDir, 'tls', 'server.key'),
    );
    expect(files).toEqual({ key: material.key, cert: material.cert });
  });

  it('names the file that cannot be read', async () => {
    const dataDir = await tempDir();
    await ensureSelfSignedTls(dataDir);
    const cert = join(dataDir, 'tls', 'server.crt');
    const key = join(dataDir, 'tls', 'server.key');
    const missing = join(dataDir, 'nope.pem');
    await expect(loadTlsFiles(missing, key)).rejects.toThrow(
      `cannot read the TLS certificate file ${missing}`,
    );
    await expect(loadTlsFiles(cert, missing)).rejects.toThrow(
      `cannot read the TLS key file ${missing}`,
    );
    await expect(loadTlsFiles(key, key)).rejects.toThrow(`${key} does not hold a PEM certificate`);
    await expect(loadTlsFiles(cert, join(dataDir, 'tls', 'ca.key'))).rejects.toThrow(
      /does not belong to the certificate/,
    );
  });

  it('says so when the key is encrypted (the server cannot ask for a passphrase)', async () => {
    const dataDir = await tempDir();
    await ensureSelfSignedTls(dataDir);
    const encrypted = join(dataDir, 'encrypted.key');
    await openssl(
      'pkey',
      '-in',
      join(dataDir, 'tls', 'server.key'),
      '-aes256',
      '-passout',
      'pass:secret-passphrase',
      '-out',
      encrypted,
    );
    await expect(loadTlsFiles(join(dataDir, 'tls', 'server.crt'), encrypted)).rejects.toThrow(
      `${encrypted} does not hold an unencrypted PEM private key`,
    );
  });
});
