/**
 * Property-based tests (fast-check) of the CLI's argument parsers, called directly where they
 * are pure, and a handful of runs of the built binary with generated arguments. For any input:
 * a parser returns a value that keeps its promise (a count within its bounds, a path segment
 * that cannot move the path, a URL on the configured server only) or throws the CLI's usage
 * error naming the flag — never anything else; the binary exits 0, 1 or 2 with one line on
 * stderr, never a stack trace.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { InvalidArgumentError } from 'commander';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConnectionString } from '../../src/blob/connection-string.js';
import { checkCapturePath } from '../../src/capture/capture-path.js';
import { parseProcNetRoute } from '../../src/capture/default-route.js';
import { parseFilters } from '../../src/capture/filter.js';
import type { PacketCaptureFilter } from '../../src/capture/filter-spec.js';
import { resolveCaptureLimits, resolveRingSettings } from '../../src/model/capture-limits.js';
import { ApiClient } from '../../src/cli/api-client.js';
import { targetChoice } from '../../src/cli/capture-create-body.js';
import { UsageError } from '../../src/cli/cli-errors.js';
import { filtersJson } from '../../src/cli/format.js';
import {
  onServer,
  parseCount,
  resourceGroupPath,
  SCALE_SET_TYPE,
  segment,
  subscriptionPath,
  vmPath,
  vmPathOfId,
} from '../../src/cli/resource-scope.js';
import { parseTags } from '../../src/cli/watcher.js';
import { WirewatchError } from '../../src/model/errors.js';
import { parseListen } from '../../src/server/start-server.js';
import { runCli } from '../lab/cli-process.js';
import { createTenant, startTestServer, type TestServer } from '../lab/control-plane.js';

const runs = { numRuns: 300 } as const;

/** Text a user could type, including the awkward parts of Unicode. */
const text = fc.oneof(
  fc.string({ maxLength: 30 }),
  fc.string({ unit: 'binary', maxLength: 30 }),
  fc.constantFrom('', ' ', '.', '..', '/', '%2F', '%', '\u0000', '-1', '1e3', '0x10', '٣', '\n'),
);

/** Runs fn; the error it threw, or undefined. */
function thrown(fn: () => unknown): unknown {
  try {
    fn();
    return undefined;
  } catch (err) {
    return err;
  }
}

describe('CLI parsers, called directly', () => {
  it('parseCount: a whole number within its bounds, or a usage error naming the flag', () => {
    fc.assert(
      fc.property(
        fc.oneof(text, fc.integer().map(String), fc.bigInt().map(String)),
        fc.integer({ min: 0, max: 10 }),
        fc.option(fc.integer({ min: 10, max: 100_000 }), { nil: undefined }),
        (value, min, max) => {
          let n: number | undefined;
          const err = thrown(() => (n = parseCount(value, '--flag', min, max)));
          if (err === undefined) {
            expect(Number.isSafeInteger(n)).toBe(true);
            expect(n!).toBeGreaterThanOrEqual(min);
            if (max !== undefined) expect(n!).toBeLessThanOrEqual(max);
            expect(String(n)).toBe(value.trim().replace(/^0+(?=\d)/, ''));
          } else {
            expect(err).toBeInstanceOf(UsageError);
            expect((err as Error).message).toContain('--flag');
          }
        },
      ),
      runs,
    );
  });

  it('segment and resource paths: one path segment that cannot move the path', () => {
    fc.assert(
      fc.property(text, text, (sub, group) => {
        const err = thrown(() => resourceGroupPath(sub, group));
        if (err !== undefined) {
          expect(err).toBeInstanceOf(UsageError);
          expect((err as Error).message).toMatch(/--subscription|--resource-group/);
          return;
        }
        const p = resourceGroupPath(sub, group);
        const parts = p.split('/');
        expect(parts).toHaveLength(5);
        expect(parts.slice(0, 2)).toEqual(['', 'subscriptions']);
        expect(parts[3]).toBe('resourceGroups');
        expect(decodeURIComponent(parts[2]!)).toBe(sub);
        expect(decodeURIComponent(parts[4]!)).toBe(group);
        // A URL built from it stays on the configured server and keeps the path as built.
        const client = new ApiClient({ server: 'http://127.0.0.1:7080', token: 't' });
        try {
          const url = client.url(`${subscriptionPath(sub)}/x`);
          expect(url.host).toBe('127.0.0.1:7080');
          expect(url.pathname.startsWith('/subscriptions/')).toBe(true);
          expect(url.pathname.split('/')).toHaveLength(4);
        } finally {
          client.close();
        }
        for (const bad of ['', '.', '..']) {
          expect(thrown(() => segment(bad, '--name'))).toBeInstanceOf(UsageError);
        }
      }),
      runs,
    );
  });

  it('onServer: a link the server sent back is only ever a path on the configured server', () => {
    const link = fc.oneof(
      fc.webUrl({ withQueryParameters: true, withFragments: true }),
      fc.constantFrom(
        '//evil.example/x',
        '@evil.example/x',
        'http://evil.example@127.0.0.1/x',
        'javascript:alert(1)',
        '\\\\evil.example\\x',
        '/\\evil.example/x',
        'http://[::1]:99/x?$skipToken=a',
      ),
      text,
    );
    fc.assert(
      fc.property(link, (l) => {
        let result: ReturnType<typeof onServer> | undefined;
        const err = thrown(() => (result = onServer(l)));
        if (err !== undefined) {
          expect(err).toBeInstanceOf(UsageError);
          return;
        }
        expect(result!.path.startsWith('/')).toBe(true);
        const client = new ApiClient({ server: 'https://wirewatch.test:7443', token: 't' });
        try {
          const url = client.url(result!.path, result!.query);
          expect(url.origin).toBe('https://wirewatch.test:7443');
        } finally {
          client.close();
        }
      }),
      runs,
    );
  });

  it('onServer: an opaque link cannot carry the token to another host (x:@evil.example/p)', () => {
    for (const link of ['x:@evil.example/p', 'mailto:t@evil.example', 'javascript:alert(1)']) {
      expect(
        thrown(() => onServer(link)),
        link,
      ).toBeInstanceOf(UsageError);
    }
    // Links the server really sends still work.
    expect(onServer('http://127.0.0.1:7080/a/b?api-version=1&$top=2')).toEqual({
      path: '/a/b',
      query: { 'api-version': '1', $top: '2' },
    });
  });

  it('filtersJson and the filter parser: filter objects or errors naming the field', () => {
    const filterish = fc.oneof(
      fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v)),
      fc
        .array(
          fc.record(
            {
              protocol: fc.oneof(fc.constantFrom('TCP', 'UDP', 'Any', 'icmp'), text),
              localPort: fc.oneof(fc.integer({ min: -1, max: 70000 }).map(String), text),
              remoteIPAddress: fc.oneof(fc.ipV4(), fc.ipV6(), text),
              localIpAddress: fc.ipV4(),
            },
            { requiredKeys: [] },
          ),
          { maxLength: 18 },
        )
        .map((v) => JSON.stringify(v)),
      text,
    );
    fc.assert(
      fc.property(filterish, (value) => {
        let filters: PacketCaptureFilter[] | undefined;
        const err = thrown(() => (filters = filtersJson(value)));
        if (err !== undefined) {
          // Commander turns this into "option '--filters <json>' argument … is invalid".
          expect(err).toBeInstanceOf(InvalidArgumentError);
          return;
        }
        expect(Array.isArray(filters)).toBe(true);
        const parseErr = thrown(() => parseFilters(filters));
        if (parseErr !== undefined) {
          expect(parseErr).toBeInstanceOf(WirewatchError);
          expect((parseErr as WirewatchError).code).toBe('InvalidFilter');
          expect((parseErr as WirewatchError).target).toMatch(/^filters(\[\d+\]|$)/);
          expect((parseErr as Error).message).toContain((parseErr as WirewatchError).target);
        }
      }),
      runs,
    );
  });

  it('capture-local limits: resolved within their bounds, or InvalidCaptureLimit naming the flag', () => {
    const n = fc.option(
      fc.oneof(
        fc.nat({ max: 5_000_000_000 }),
        fc.constantFrom(0, 23, 24, 18000, 18001, 604800, 604801, 10000, 10001),
      ),
      { nil: undefined },
    );
    fc.assert(
      fc.property(n, n, n, n, n, n, (b, s, tl, fcnt, fsz, stl) => {
        const err = thrown(() => {
          const limits = resolveCaptureLimits({
            bytesToCapturePerPacket: b,
            totalBytesPerSession: s,
            timeLimitInSeconds: tl,
          });
          expect(limits.timeLimitInSeconds).toBeGreaterThan(0);
          expect(limits.timeLimitInSeconds).toBeLessThanOrEqual(18000);
          expect(limits.totalBytesPerSession).toBeGreaterThanOrEqual(24);
          const ring = resolveRingSettings(
            { fileCount: fcnt, fileSizeInBytes: fsz, sessionTimeLimitInSeconds: stl },
            '--',
          );
          expect(ring.fileCount).toBeGreaterThan(0);
          expect(ring.sessionTimeLimitInSeconds).toBeLessThanOrEqual(604800);
        });
        if (err !== undefined) {
          expect(err).toBeInstanceOf(WirewatchError);
          expect((err as WirewatchError).code).toBe('InvalidCaptureLimit');
          expect((err as WirewatchError).target).toBeTruthy();
        }
      }),
      runs,
    );
  });

  it('capture file paths: under the root with a capture extension, or InvalidCapturePath', () => {
    const p = fc.oneof(
      text,
      text.map((s) => `/var/captures/${s}`),
      text.map((s) => `/var/captures/${s}.cap`),
      fc
        .array(fc.constantFrom('..', '.', 'a', '', 'b.cap', 'c.pcap'), { maxLength: 6 })
        .map((xs) => `/var/captures/${xs.join('/')}`),
    );
    fc.assert(
      fc.property(p, (filePath) => {
        let resolved: string | undefined;
        const err = thrown(
          () => (resolved = checkCapturePath(filePath, '/var/captures', '--file')),
        );
        if (err !== undefined) {
          expect(err).toBeInstanceOf(WirewatchError);
          expect((err as WirewatchError).code).toBe('InvalidCapturePath');
          expect((err as WirewatchError).target).toBe('--file');
          return;
        }
        expect(resolved!.startsWith('/var/captures/')).toBe(true);
        expect(resolved!.split('/')).not.toContain('..');
        expect(path.normalize(resolved!)).toBe(resolved);
        expect(['.cap', '.pcap']).toContain(path.extname(resolved!).toLowerCase());
      }),
      runs,
    );
  });

  it('parseTags: every key=value word becomes a tag, a word without a key is a usage error', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.oneof(text, fc.constantFrom('__proto__=x', '__proto__', 'constructor=y', 'toString=')),
          { maxLength: 6 },
        ),
        (words) => {
          let tags: Record<string, string> | undefined;
          const err = thrown(() => (tags = parseTags(words)));
          if (err !== undefined) {
            expect(err).toBeInstanceOf(UsageError);
            expect((err as Error).message).toContain('--tags');
            return;
          }
          if (words.length === 1 && words[0] === '') {
            expect(tags).toEqual({});
            return;
          }
          // The last word of each key wins; every key is in the body that goes to the server.
          const expected = new Map<string, string>();
          for (const w of words) {
            const eq = w.indexOf('=');
            expected.set(eq < 0 ? w : w.slice(0, eq), eq < 0 ? '' : w.slice(eq + 1));
          }
          expect(Object.keys(tags!).sort()).toEqual([...expected.keys()].sort());
          expect(JSON.stringify(tags)).toBe(JSON.stringify(Object.fromEntries(expected)));
        },
      ),
      runs,
    );
  });

  it('server --listen: HOST:PORT with a port 0–65535, or InvalidRequestContent naming listen', () => {
    const listen = fc.oneof(
      text,
      fc
        .tuple(fc.oneof(fc.ipV4(), fc.domain(), text), fc.integer({ min: -1, max: 70000 }))
        .map(([h, p]) => `${h}:${p}`),
      fc.tuple(fc.ipV6(), fc.integer({ min: 0, max: 65535 })).map(([h, p]) => `[${h}]:${p}`),
    );
    fc.assert(
      fc.property(listen, (value) => {
        let parsed: { host: string; port: number } | undefined;
        const err = thrown(() => (parsed = parseListen(value)));
        if (err !== undefined) {
          expect(err).toBeInstanceOf(WirewatchError);
          expect((err as WirewatchError).target).toBe('listen');
          return;
        }
        expect(Number.isInteger(parsed!.port)).toBe(true);
        expect(parsed!.port).toBeGreaterThanOrEqual(0);
        expect(parsed!.port).toBeLessThanOrEqual(65535);
        expect(parsed!.host.length).toBeGreaterThan(0);
      }),
      runs,
    );
  });

  it('connection strings: parsed, or InvalidConnectionString that never quotes the key', () => {
    const key = fc.base64String({ minLength: 8, maxLength: 88 }).filter((k) => k.length >= 8);
    const part = fc.oneof(
      key.map((k) => `AccountKey=${k}`),
      fc.constantFrom(
        'AccountName=acct',
        'DefaultEndpointsProtocol=https',
        'DefaultEndpointsProtocol=ftp',
        'EndpointSuffix=core.windows.net',
        'BlobEndpoint=http://127.0.0.1:10000/acct',
        'BlobEndpoint=javascript:x',
        'UseDevelopmentStorage=true',
        'SharedAccessSignature=sv=1&sig=2',
        'AccountName=acct',
        '=x',
        'junk',
      ),
      fc.tuple(text, text).map(([k, v]) => `${k}=${v}`),
    );
    fc.assert(
      fc.property(fc.array(part, { maxLength: 6 }), (parts) => {
        const value = parts.join(';');
        const err = thrown(() => parseConnectionString(value));
        if (err === undefined) return;
        expect(err).toBeInstanceOf(WirewatchError);
        expect((err as WirewatchError).code).toBe('InvalidConnectionString');
        for (const p of parts) {
          const secret = /^AccountKey=(.{8,})$/i.exec(p)?.[1];
          if (secret) expect((err as Error).message).not.toContain(secret);
        }
      }),
      runs,
    );
  });

  it('scale set names and ids, the target options and /proc/net/route: never throw anything but a usage error', () => {
    fc.assert(
      fc.property(text, text, fc.string({ maxLength: 300 }), (vmss, rg, route) => {
        for (const parse of [
          () => vmPath('sub', rg, vmss, '--vmss', SCALE_SET_TYPE),
          () => vmPathOfId(vmss, '--vmss', SCALE_SET_TYPE),
          () => targetChoice({ name: 'x', vmss, ...(rg === '' ? { vm: rg } : {}) }),
        ]) {
          const err = thrown(parse);
          if (err !== undefined) expect(err).toBeInstanceOf(UsageError);
        }
        const iface = parseProcNetRoute(`Iface\tDestination\n${route}`);
        expect(iface === undefined || typeof iface === 'string').toBe(true);
      }),
      runs,
    );
  });
});

// ---- the built binary ---------------------------------------------------------------------

let t: TestServer;
let home: string;
let env: Record<string, string | undefined>;

beforeAll(async () => {
  t = await startTestServer();
  const tenant = await createTenant(t, 'cli-args');
  home = await mkdtemp(path.join(tmpdir(), 'ww-cli-args-'));
  env = {
    XDG_CONFIG_HOME: home,
    HOME: home,
    WIREWATCH_SERVER: t.url,
    WIREWATCH_TOKEN: tenant.owner,
    WIREWATCH_PROFILE: undefined,
    WIREWATCH_SUBSCRIPTION: undefined,
  };
});

afterAll(async () => {
  await t?.close();
  if (home) await rm(home, { recursive: true, force: true });
});

/** One line on stderr, `wirewatch: CODE: message` (commander's errors too), no stack trace; exit 0, 1 or 2. */
function expectCleanExit(r: { code: number | null; stderr: string }, args: readonly string[]) {
  const context = `wirewatch ${args.join(' ')} → ${r.code}: ${r.stderr}`;
  expect([0, 1, 2], context).toContain(r.code);
  expect(r.stderr, context).not.toMatch(/\n\s+at .+:\d+:\d+/);
  if (r.code !== 0) expect(r.stderr, context).toMatch(/^wirewatch: [A-Z][A-Za-z]+: [^\n]+\n$/);
}

describe('the built binary with generated arguments', () => {
  it('numeric options, tags and filters: a clean refusal naming the option, or a request', async () => {
    const value = fc.oneof(
      fc.constantFrom('-1', '1.5', '1e3', '0x10', '99999999999999999999', '', ' ', 'abc', '٣'),
      fc.string({ maxLength: 8 }).filter((s) => !s.startsWith('-')),
    );
    const argv = fc.oneof(
      value.map((v) => ({ args: ['audit', 'list', '--top', v], flag: '--top' })),
      value.map((v) => ({
        args: ['admin', 'enroll-token', 'create', '--expires-in-hours', v],
        flag: '--expires-in-hours',
      })),
      value.map((v) => ({
        args: ['capture', 'create', '-n', 'x', '--vm', 'vm', '-g', 'rg', '--time-limit', v],
        flag: '--time-limit',
      })),
      value.map((v) => ({
        args: ['capture-local', '-i', 'lo', '-f', 'relative.cap', '--file-count', v],
        flag: '--file-count',
      })),
      value.map((v) => ({
        args: ['capture-local', '-i', 'lo', '-f', 'relative.cap', '--filters', v],
        flag: '--filters',
      })),
      value.map((v) => ({
        args: ['watcher', 'create', '-g', 'rg', '-n', 'nw', '-l', 'westeurope', '--tags', `=${v}`],
        flag: '--tags',
      })),
    );
    const samples = fc.sample(argv, { numRuns: 8 });
    // Values every parser must refuse, once each, plus the generated ones.
    const fixed = [
      { args: ['audit', 'list', '--top', '0'], flag: '--top' },
      {
        args: ['admin', 'enroll-token', 'create', '--expires-in-hours', '8761'],
        flag: '--expires-in-hours',
      },
      {
        args: ['capture-local', '-i', 'lo', '-f', 'relative.cap', '--time-limit', '-5'],
        flag: '--time-limit',
      },
      {
        args: ['capture-local', '-i', 'lo', '-f', 'relative.cap', '--filters', '{'],
        flag: '--filters',
      },
    ];
    const results = await Promise.all(
      [...fixed, ...samples].map(async (s) => ({ s, r: await runCli(s.args, env, 30_000) })),
    );
    for (const [i, { s, r }] of results.entries()) {
      expectCleanExit(r, s.args);
      if (i < fixed.length) {
        expect(r.code, r.stderr).toBe(2);
        expect(r.stderr).toContain(s.flag);
      }
    }
  });
});
