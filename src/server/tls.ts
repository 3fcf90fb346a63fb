/**
 * TLS material for the control plane's HTTPS listener. Without `--tls-cert/--tls-key` the server
 * makes its own small PKI under `<dataDir>/tls/`: a local CA that operators and agents can pin
 * (`ca.crt`), and a short-lived server certificate signed by it for the names it is given
 * (`wirewatch server`: loopback, this host's names and addresses, `--tls-san`). The CA is made
 * once; the server certificate is re-issued from it when missing or near expiry, so clients that
 * trust the CA keep working across renewals.
 *
 * Keys and certificates are made by the `openssl` CLI rather than by hand-built ASN.1: Node can
 * generate keys but not sign certificates, and openssl is on every host this runs on.
 */

import { execFile } from 'node:child_process';
import { createPrivateKey, randomBytes, X509Certificate } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { chmod, mkdir, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { readIfExists, syncFolder, writeNewFileSynced } from '../files/durable-file.js';
import {
  LOOPBACK_NAMES,
  opensslSubjectAltName,
  parseSubjectAltName,
  sortSans,
  type SanEntry,
} from './tls-names.js';

/** What the HTTPS server needs, plus the CA that clients should trust. */
export interface TlsMaterial {
  /** The server's private key, PEM. */
  key: Buffer;
  /** The server's certificate, PEM, signed by `ca`. */
  cert: Buffer;
  /** The local CA's certificate, PEM: what clients pass as `ca` (or `--cacert`). */
  ca: Buffer;
  /** Where `ca` lives on disk, to show to the operator. */
  caPath: string;
  /** The names the server certificate is for. */
  names: readonly SanEntry[];
}

/** Test hooks and overrides for {@link ensureSelfSignedTls}. */
export interface SelfSignedTlsOptions {
  /** The openssl binary; `openssl` from PATH by default. */
  opensslPath?: string;
  /**
   * The names the server certificate is for (its subjectAltName); default localhost, 127.0.0.1
   * and ::1. `wirewatch server` passes this host's names and addresses (tls-names.ts).
   */
  names?: readonly SanEntry[];
}

const CA_DAYS = 3650;
/**
 * Two years: under the 825-day ceiling that Apple's TLS clients enforce for server certificates,
 * and short enough that a leaked key ages out.
 */
const SERVER_DAYS = 730;
/** Re-issue this long before expiry, so a server that runs for weeks never serves an expired one. */
const RENEW_BEFORE_MS = 30 * 24 * 60 * 60 * 1000;
const OPENSSL_TIMEOUT_MS = 30_000;

interface TlsPaths {
  dir: string;
  caKey: string;
  caCert: string;
  serverKey: string;
  serverCert: string;
}

interface LoadedCa {
  cert: Buffer;
  x509: X509Certificate;
  /** False when ca.key was removed (an operator keeping the CA key offline). */
  hasKey: boolean;
}

/**
 * Returns the TLS material in `dataDir/tls/`, creating it on first use: a local CA (10 years,
 * ECDSA P-256) and a server certificate for `options.names` (default `localhost`, `127.0.0.1`
 * and `::1`; 2 years) signed by it. Later calls reuse the files; only the server certificate is
 * re-issued, from the same CA, when it is missing, does not match its key or CA, is for another
 * set of names, or expires within 30 days.
 *
 * Files are replaced atomically, and on load every file is checked against the others, so a
 * crash part-way through leaves at worst an incomplete set that the next call redoes.
 *
 * @throws Error when openssl is not installed, when it fails, or when the server certificate
 *   must be re-issued but `ca.key` has been removed.
 */
export async function ensureSelfSignedTls(
  dataDir: string,
  options: SelfSignedTlsOptions = {},
): Promise<TlsMaterial> {
  const openssl = options.opensslPath ?? 'openssl';
  const dir = join(dataDir, 'tls');
  const paths: TlsPaths = {
    dir,
    caKey: join(dir, 'ca.key'),
    caCert: join(dir, 'ca.crt'),
    serverKey: join(dir, 'server.key'),
    serverCert: join(dir, 'server.crt'),
  };
  await mkdir(dir, { recursive: true, mode: 0o700 });
  // mkdir's mode is filtered by the umask and ignored for an existing directory.
  await chmod(dir, 0o700);

  const names = sortSans(options.names ?? LOOPBACK_NAMES);
  if (names.length === 0) throw new Error('a server certificate needs at least one name');
  let ca = await loadCa(paths);
  let server = ca === undefined ? undefined : await loadServer(paths, ca.x509, names);
  if (ca === undefined) {
    ca = await createCa(openssl, paths);
  }
  if (server === undefined) {
    if (!ca.hasKey) {
      throw new Error(
        `the TLS server certificate in ${dir} must be re-issued but ${paths.caKey} is missing: ` +
          `restore it, or remove ${paths.caCert} to create a new local CA (clients must then ` +
          'trust the new one)',
      );
    }
    server = await issueServerCert(openssl, paths, names);
  }
  return { key: server.key, cert: server.cert, ca: ca.cert, caPath: paths.caCert, names };
}

/**
 * Reads an operator-supplied certificate and key (`--tls-cert`, `--tls-key`) and checks that
 * they parse and belong together, so a mistake fails at start-up with the file's name rather
 * than at the first handshake. `certPath` may hold a chain, leaf first.
 *
 * @throws Error naming the file that cannot be read or parsed, or saying that they do not match.
 */
export async function loadTlsFiles(
  certPath: string,
  keyPath: string,
): Promise<{ key: Buffer; cert: Buffer }> {
  const cert = await readFile(certPath).catch((cause: unknown) => {
    throw new Error(`cannot read the TLS certificate file ${certPath}: ${message(cause)}`, {
      cause,
    });
  });
  const key = await readFile(keyPath).catch((cause: unknown) => {
    throw new Error(`cannot read the TLS key file ${keyPath}: ${message(cause)}`, { cause });
  });
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(cert);
  } catch (cause) {
    throw new Error(`${certPath} does not hold a PEM certificate: ${message(cause)}`, { cause });
  }
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(key);
  } catch (cause) {
    throw new Error(`${keyPath} does not hold an unencrypted PEM private key: ${message(cause)}`, {
      cause,
    });
  }
  if (!x509.checkPrivateKey(privateKey)) {
    throw new Error(`the key in ${keyPath} does not belong to the certificate in ${certPath}`);
  }
  const now = Date.now();
  if (Date.parse(x509.validTo) <= now) {
    throw new Error(`the TLS certificate in ${certPath} expired on ${x509.validTo}`);
  }
  if (Date.parse(x509.validFrom) > now) {
    throw new Error(`the TLS certificate in ${certPath} is not valid before ${x509.validFrom}`);
  }
  return { key, cert };
}

/**
 * The CA on disk, or undefined when there is none worth keeping: ca.crt missing or not a
 * self-signed CA, or ca.key present but not its key (a CA creation cut short writes the key
 * first, so this is what a crash leaves). ca.crt without ca.key is kept: nobody can have trusted
 * a half-made CA, so that state only comes from an operator moving the key away.
 */
async function loadCa(paths: TlsPaths): Promise<LoadedCa | undefined> {
  const cert = await readIfExists(paths.caCert);
  if (cert === undefined) return undefined;
  const x509 = parseCert(cert);
  if (x509 === undefined || !x509.ca || !x509.checkIssued(x509)) return undefined;
  const key = await readIfExists(paths.caKey);
  if (key === undefined) return { cert, x509, hasKey: false };
  const privateKey = parseKey(key);
  if (privateKey === undefined || !x509.checkPrivateKey(privateKey)) return undefined;
  return { cert, x509, hasKey: true };
}

/**
 * The server key and certificate, if both exist, match, chain to `ca`, are not near expiry and
 * are for exactly `names` (a changed set, say a new address or --tls-san, re-issues it).
 */
async function loadServer(
  paths: TlsPaths,
  ca: X509Certificate,
  names: readonly SanEntry[],
): Promise<{ key: Buffer; cert: Buffer } | undefined> {
  const [key, cert] = await Promise.all([
    readIfExists(paths.serverKey),
    readIfExists(paths.serverCert),
  ]);
  if (key === undefined || cert === undefined) return undefined;
  const x509 = parseCert(cert);
  const privateKey = parseKey(key);
  if (x509 === undefined || privateKey === undefined) return undefined;
  if (x509.ca || !x509.checkPrivateKey(privateKey)) return undefined;
  if (!x509.checkIssued(ca) || !x509.verify(ca.publicKey)) return undefined;
  const has = parseSubjectAltName(x509.subjectAltName);
  if (opensslSubjectAltName(has) !== opensslSubjectAltName(names)) return undefined;
  const notAfter = Date.parse(x509.validTo);
  // An unparseable date is treated as expired: re-issuing is always safe.
  if (!(notAfter - Date.now() > RENEW_BEFORE_MS)) return undefined;
  return { key, cert };
}

async function createCa(openssl: string, paths: TlsPaths): Promise<LoadedCa> {
  const id = randomBytes(4).toString('hex');
  const config = [
    '[req]',
    'prompt = no',
    'distinguished_name = ca_dn',
    'x509_extensions = v3_ca',
    '[ca_dn]',
    `CN = wirewatch local CA ${id}`,
    '[v3_ca]',
    'basicConstraints = critical,CA:TRUE',
    'keyUsage = critical,keyCertSign,cRLSign',
    'subjectKeyIdentifier = hash',
    'authorityKeyIdentifier = keyid:always',
  ];
  const key = await generateKey(openssl);
  const keyTemp = await writeTemp(paths.caKey, key, 0o600);
  try {
    const cert = await withConfig(paths.dir, config, (configPath) =>
      run(openssl, [
        'req',
        '-new',
        '-x509',
        '-config',
        configPath,
        '-key',
        keyTemp,
        '-sha256',
        '-days',
        String(CA_DAYS),
        '-set_serial',
        randomSerial(),
      ]),
    );
    // Key before certificate: see loadCa for why this order is the recoverable one.
    await rename(keyTemp, paths.caKey);
    await writeAtomic(paths.caCert, cert, 0o644);
    await syncFolder(paths.dir);
    const x509 = parseCert(cert);
    if (x509 === undefined) throw new Error('openssl made a CA certificate that does not parse');
    return { cert, x509, hasKey: true };
  } finally {
    await rm(keyTemp, { force: true });
  }
}

async function issueServerCert(
  openssl: string,
  paths: TlsPaths,
  names: readonly SanEntry[],
): Promise<{ key: Buffer; cert: Buffer }> {
  // Clients check the subjectAltName only; the CN is for people reading the certificate.
  const commonName = names.find((n) => n.type === 'DNS' && n.value !== 'localhost')?.value;
  const config = [
    '[req]',
    'prompt = no',
    'distinguished_name = server_dn',
    '[server_dn]',
    `CN = ${commonName ?? 'localhost'}`,
    '[v3_server]',
    'basicConstraints = critical,CA:FALSE',
    // ECDSA keys sign the handshake; they never encrypt, so digitalSignature alone.
    'keyUsage = critical,digitalSignature',
    'extendedKeyUsage = serverAuth',
    `subjectAltName = ${opensslSubjectAltName(names)}`,
    'subjectKeyIdentifier = hash',
    'authorityKeyIdentifier = keyid,issuer',
  ];
  const key = await generateKey(openssl);
  const keyTemp = await writeTemp(paths.serverKey, key, 0o600);
  try {
    const cert = await withConfig(paths.dir, config, async (configPath) => {
      const csr = await run(openssl, ['req', '-new', '-config', configPath, '-key', keyTemp]);
      return run(
        openssl,
        [
          'x509',
          '-req',
          '-in',
          '-',
          '-CA',
          paths.caCert,
          '-CAkey',
          paths.caKey,
          '-extfile',
          configPath,
          '-extensions',
          'v3_server',
          '-sha256',
          '-days',
          String(SERVER_DAYS),
          // An explicit serial also keeps openssl from writing a ca.srl file next to the CA.
          '-set_serial',
          randomSerial(),
        ],
        csr,
      );
    });
    // Key before certificate: a crash between leaves a key that matches no certificate, which
    // loadServer rejects, rather than a certificate served with the wrong key.
    await rename(keyTemp, paths.serverKey);
    await writeAtomic(paths.serverCert, cert, 0o644);
    await syncFolder(paths.dir);
    return { key, cert };
  } finally {
    await rm(keyTemp, { force: true });
  }
}

/** A new ECDSA P-256 private key, PEM (PKCS#8), from openssl's stdout so we set the file mode. */
function generateKey(openssl: string): Promise<Buffer> {
  return run(openssl, ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256']);
}

/** 128 random bits as openssl's hex serial, high bit clear so the DER integer stays positive. */
function randomSerial(): string {
  const bytes = randomBytes(16);
  bytes[0] = bytes[0]! & 0x7f;
  return `0x${bytes.toString('hex')}`;
}

/** Runs `fn` with an openssl config file written into `dir`, removing the file afterwards. */
async function withConfig<T>(
  dir: string,
  lines: readonly string[],
  fn: (configPath: string) => Promise<T>,
): Promise<T> {
  const configPath = join(dir, `openssl-${randomBytes(6).toString('hex')}.cnf`);
  try {
    await writeNewFileSynced(configPath, Buffer.from(`${lines.join('\n')}\n`), 0o600);
    return await fn(configPath);
  } finally {
    await rm(configPath, { force: true });
  }
}

/** Runs openssl with an argument array (no shell), feeding `input` on stdin; resolves stdout. */
function run(openssl: string, args: readonly string[], input?: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      openssl,
      args,
      { encoding: 'buffer', timeout: OPENSSL_TIMEOUT_MS, maxBuffer: 1 << 20 },
      (error, stdout, stderr) => {
        if (error === null) {
          resolve(stdout);
        } else if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
          reject(
            new Error(
              `openssl is not installed (${openssl} not found); it is needed to create the ` +
                'self-signed TLS certificate: apt-get install -y openssl (or pass --tls-cert ' +
                'and --tls-key)',
              { cause: error },
            ),
          );
        } else {
          const detail = stderr.toString('utf8').trim() || error.message;
          reject(new Error(`openssl ${args[0] ?? ''} failed: ${detail}`, { cause: error }));
        }
      },
    );
    // An early exit closes the pipe; the failure itself is reported through the callback.
    child.stdin?.on('error', () => {});
    child.stdin?.end(input);
  });
}

/** Writes `data` to a new temporary file beside `path` and returns its name. */
async function writeTemp(path: string, data: Buffer, mode: number): Promise<string> {
  const temp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    await writeNewFileSynced(temp, data, mode);
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
  return temp;
}

/** Replaces `path` with `data` so that readers see the old file or the whole new one. */
async function writeAtomic(path: string, data: Buffer, mode: number): Promise<void> {
  const temp = await writeTemp(path, data, mode);
  try {
    await rename(temp, path);
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
}

function parseCert(pem: Buffer): X509Certificate | undefined {
  try {
    return new X509Certificate(pem);
  } catch {
    return undefined;
  }
}

function parseKey(pem: Buffer): KeyObject | undefined {
  try {
    return createPrivateKey(pem);
  } catch {
    return undefined;
  }
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
