/**
 * The agent against a fake server, without captures: enrollment, the journal, hello, acks,
 * recovery after a crash, reconnects, revoked credentials. Captures on real interfaces are in
 * test/agent.test.ts.
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CHANNEL_PROTOCOL_VERSION, type CaptureAssignment } from '../model/channel.js';
import { readPcapFile } from '../pcap/reader.js';
import { createAgent, type Agent, type AgentEvent, type AgentOptions } from './agent.js';
import { createJsonLineLog } from './agent-log.js';
import { backoffDelay } from './backoff.js';
import { EnrollmentRefusedError, readIdentity } from './enroll.js';
import type { JournalEntry } from './journal.js';
import { startFakeServer, type FakeServer } from '../../test/support/fake-server.js';
import { pcapBytes } from '../../test/support/pcap-records.js';

const subscriptionId = randomUUID();

let dir: string;
let server: FakeServer;
let agents: Agent[];
let logLines: string[];

beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'wirewatch-agent-'));
  server = await startFakeServer();
  agents = [];
  logLines = [];
});

afterEach(async () => {
  try {
    for (const agent of agents) await agent.close();
  } finally {
    await server.close();
    await rm(dir, { recursive: true, force: true });
  }
});

function options(overrides: Partial<AgentOptions> = {}): AgentOptions {
  return {
    serverUrl: server.url,
    enrollToken: server.enrollToken,
    subscriptionId,
    resourceGroup: 'rg-agent',
    name: 'vm-1',
    location: 'westeurope',
    interface: 'lo',
    dataDir: path.join(dir, 'data'),
    captureRoot: path.join(dir, 'captures'),
    hostname: 'host-under-test',
    backoffMinMs: 20,
    backoffMaxMs: 200,
    ackWaitMs: 200,
    log: createJsonLineLog((line) => logLines.push(line), { minLevel: 'debug' }),
    ...overrides,
  };
}

async function start(overrides: Partial<AgentOptions> = {}): Promise<Agent> {
  const agent = await createAgent(options(overrides));
  agents.push(agent);
  return agent;
}

function assignment(overrides: Partial<CaptureAssignment> = {}): CaptureAssignment {
  const sessionId = randomUUID();
  return {
    sessionId,
    resourceId: `/subscriptions/${subscriptionId}/resourceGroups/NetworkWatcherRG/providers/Microsoft.Network/networkWatchers/NetworkWatcher_westeurope/packetCaptures/pc-${sessionId}`,
    filePath: path.join(dir, 'captures', `${sessionId}.cap`),
    filters: [],
    bytesToCapturePerPacket: 0,
    totalBytesPerSession: 1073741824,
    timeLimitInSeconds: 60,
    continuousCapture: false,
    createdAt: new Date().toISOString(),
    ...overrides,
  };
}

async function until(check: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

function nextEvent(agent: Agent, type: AgentEvent['type']): Promise<AgentEvent> {
  return new Promise((resolve) => {
    const off = agent.onEvent((event) => {
      if (event.type === type) {
        off();
        resolve(event);
      }
    });
  });
}

const journalFile = (id: string) => path.join(dir, 'data', 'sessions', `${id}.json`);

async function countRecords(file: string): Promise<number> {
  let n = 0;
  for await (const record of readPcapFile(file)) {
    void record;
    n++;
  }
  return n;
}

describe('enrollment', () => {
  it('enrolls once, keeps agent.json private, and reuses it without a token', async () => {
    const first = await start();
    const hello = await server.waitFor('hello');
    expect(hello).toMatchObject({
      protocolVersion: CHANNEL_PROTOCOL_VERSION,
      hostname: 'host-under-test',
      captureRoot: path.join(dir, 'captures'),
      sessions: [],
    });
    expect(server.enrollments).toEqual([
      {
        subscriptionId,
        resourceGroup: 'rg-agent',
        name: 'vm-1',
        location: 'westeurope',
        hostname: 'host-under-test',
        captureRoot: path.join(dir, 'captures'),
      },
    ]);
    const file = path.join(dir, 'data', 'agent.json');
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    const saved = JSON.parse(await readFile(file, 'utf8')) as Record<string, string>;
    expect(saved).toEqual({
      agentId: first.agentId,
      vmId: first.vmId,
      credential: [...server.credentials][0],
      serverUrl: server.url,
      subscriptionId,
      resourceGroup: 'rg-agent',
      name: 'vm-1',
      location: 'westeurope',
    });
    await first.close();

    const second = await createAgent(options({ enrollToken: undefined }));
    agents.push(second);
    expect(second.agentId).toBe(first.agentId);
    await server.waitFor('hello', (_m, r) => r.connection === 1);
    expect(server.enrollments).toHaveLength(1);
  });

  it('never logs the credential or the enrollment token', async () => {
    const agent = await start();
    await server.waitFor('hello');
    await agent.close();
    const all = logLines.join('');
    expect(all).toMatch(/"msg":"enrolled"/);
    expect(all).not.toContain(server.enrollToken);
    for (const credential of server.credentials) expect(all).not.toContain(credential);
    for (const line of logLines) {
      expect(Object.keys(JSON.parse(line) as object).slice(0, 3)).toEqual(['time', 'level', 'msg']);
    }
  });

  it("stops with the server's error code when the enrollment is refused", async () => {
    const failure = createAgent(options({ enrollToken: 'wrong' }));
    await expect(failure).rejects.toBeInstanceOf(EnrollmentRefusedError);
    await expect(failure).rejects.toThrow(/HTTP 401 InvalidEnrollmentToken/);
    await expect(stat(path.join(dir, 'data', 'agent.json'))).rejects.toThrow(/ENOENT/);
  });

  it('names the option at fault before it asks the server', async () => {
    await expect(createAgent(options({ subscriptionId: 'sub-1' }))).rejects.toThrow(
      /"sub-1" is not a valid --subscription/,
    );
    await expect(createAgent(options({ location: 'West Europe' }))).rejects.toThrow(/--location/);
    expect(server.enrollments).toHaveLength(0);
  });

  it('needs a token while not enrolled', async () => {
    await expect(createAgent(options({ enrollToken: undefined }))).rejects.toThrow(
      /--enroll-token is needed/,
    );
  });

  it('retries while the server cannot be reached', async () => {
    // A port that is free now; the server appears on it a little later.
    const probe = createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const port = (probe.address() as { port: number }).port;
    await new Promise((resolve) => probe.close(resolve));
    const late = new Promise((r) => setTimeout(r, 500)).then(() =>
      startFakeServer({ enrollToken: server.enrollToken }, port),
    );
    const pending = createAgent(
      options({ serverUrl: `http://127.0.0.1:${port}`, backoffMinMs: 100, backoffMaxMs: 300 }),
    );
    const other = await late;
    try {
      const agent = await pending;
      agents.push(agent);
      expect(other.enrollments).toHaveLength(1);
      expect(logLines.join('')).toMatch(/enrollment failed; retrying/);
    } finally {
      for (const agent of agents.splice(0)) await agent.close();
      await other.close();
    }
  });

  it('refuses a data dir that belongs to another VM', async () => {
    const agent = await start();
    await agent.close();
    await expect(createAgent(options({ name: 'vm-2' }))).rejects.toThrow(
      /belongs to name "vm-1", not "vm-2"/,
    );
  });

  it('enrolls as a scale-set instance; a restart is the instance the server assigned', async () => {
    const instance = { name: undefined, scaleSet: 'web' };
    await (await start(instance)).close();
    expect(server.enrollments).toEqual([
      expect.objectContaining({ scaleSet: 'web', resourceGroup: 'rg-agent' }),
    ]);
    expect(server.enrollments[0]).not.toHaveProperty('instanceId');
    expect(server.enrollments[0]).not.toHaveProperty('name');
    const saved = await readIdentity(path.join(dir, 'data'));
    expect(saved).toMatchObject({ name: 'web_0', scaleSet: 'web', instanceId: '0' });
    expect(saved?.vmId).toMatch(/\/virtualMachineScaleSets\/web\/virtualMachines\/0$/);
    // Restarts, with or without its id, are the same instance: no second enrollment.
    await (await start(instance)).close();
    await (await start({ ...instance, scaleSet: 'WEB', instanceId: '0' })).close();
    expect(server.enrollments).toHaveLength(1);
    await expect(createAgent(options({ ...instance, instanceId: '1' }))).rejects.toThrow(
      /belongs to instanceId "0", not "1"/,
    );
    await expect(createAgent(options({ ...instance, scaleSet: 'api' }))).rejects.toThrow(
      /belongs to scaleSet "web", not "api"/,
    );
    await expect(createAgent(options())).rejects.toThrow(/belongs to scaleSet "web", not null/);
  });

  it('names the scale-set option at fault before it asks the server', async () => {
    const cases: [Partial<AgentOptions>, RegExp][] = [
      [{ name: undefined, scaleSet: 'web_1' }, /"web_1" is not a valid --scale-set/],
      [{ name: undefined, scaleSet: 'web', instanceId: '01' }, /"01" is not a valid --instance-id/],
      [{ scaleSet: 'web' }, /either --name .* or --scale-set/],
      [{ name: undefined }, /either --name .* or --scale-set/],
      [{ instanceId: '1' }, /--instance-id goes with --scale-set/],
    ];
    for (const [overrides, message] of cases) {
      await expect(createAgent(options(overrides))).rejects.toThrow(message);
    }
    expect(server.enrollments).toHaveLength(0);
  });

  it('refuses a second agent on the same data dir, and takes over a stale lock', async () => {
    const agent = await start();
    await expect(createAgent(options())).rejects.toThrow(/already using/);
    await agent.close();
    // Left by a crash: a dead pid, or this very pid in an earlier life (a container's pid 1).
    for (const stale of ['999999999 1', `${process.pid} 1`]) {
      await writeFile(path.join(dir, 'data', 'agent.lock'), stale);
      await (await start()).close();
    }
  });
});

/** A CA and a certificate for 127.0.0.1 signed by it, made with openssl. */
async function makeCertificates(folder: string) {
  const openssl = (args: string[]) => promisify(execFile)('openssl', args, { cwd: folder });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  await openssl(
    ['req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '1'].concat([
      '-subj',
      '/CN=wirewatch test CA',
    ]),
  );
  await openssl([
    'req',
    ...ec,
    '-keyout',
    'server.key',
    '-out',
    'server.csr',
    '-subj',
    '/CN=127.0.0.1',
  ]);
  await writeFile(path.join(folder, 'san.cnf'), 'subjectAltName=IP:127.0.0.1\n');
  await openssl(
    ['x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key'].concat([
      '-CAcreateserial',
      '-out',
      'server.pem',
      '-days',
      '1',
      '-extfile',
      'san.cnf',
    ]),
  );
  const read = (name: string) => readFile(path.join(folder, name));
  return {
    ca: await read('ca.pem'),
    key: await read('server.key'),
    cert: await read('server.pem'),
  };
}

describe('over HTTPS', () => {
  it('enrolls and connects trusting the --ca certificate, and not without it', async () => {
    const certs = await makeCertificates(dir);
    const secure = await startFakeServer({ tls: { key: certs.key, cert: certs.cert } });
    try {
      expect(secure.url).toMatch(/^https:/);
      const untrusting = new AbortController();
      const refused = createAgent(
        options({
          serverUrl: secure.url,
          enrollToken: secure.enrollToken,
          signal: untrusting.signal,
        }),
      );
      await until(() => logLines.some((l) => /enrollment failed; retrying.*certificate/.test(l)));
      untrusting.abort();
      await expect(refused).rejects.toThrow();
      expect(secure.enrollments).toHaveLength(0);

      const agent = await start({
        serverUrl: secure.url,
        enrollToken: secure.enrollToken,
        ca: certs.ca,
      });
      await secure.waitFor('hello');
      expect(secure.enrollments).toHaveLength(1);
      expect(agent.connected).toBe(true);
      await agent.close();
    } finally {
      await secure.close();
    }
  });
});

describe('the channel', () => {
  it('refuses a bad filter with stopped Error InvalidFilter, and forgets it on ack', async () => {
    await start();
    await server.waitFor('hello');
    const a = assignment({ filters: [{ localPort: '80-' }] });
    server.send({ type: 'start', assignment: a });
    const stopped = await server.waitFor('stopped', (m) => m.sessionId === a.sessionId);
    expect(stopped).toMatchObject({
      stopReason: 'Error',
      error: { code: 'InvalidFilter', message: expect.stringMatching(/localPort/) },
      files: [],
      progress: { packets: 0, bytes: 0, kernelDrops: 0 },
    });
    expect(server.received.some((r) => r.message.type === 'started')).toBe(false);
    const entry = JSON.parse(await readFile(journalFile(a.sessionId), 'utf8')) as JournalEntry;
    expect(entry).toMatchObject({ state: 'Stopped', stopReason: 'Error' });

    // A repeated start for a session in the journal is ignored.
    server.send({ type: 'start', assignment: a });
    server.send({ type: 'ack', sessionId: a.sessionId });
    await until(async () => (await readdir(path.join(dir, 'data', 'sessions'))).length === 0);
    expect(server.received.filter((r) => r.message.type === 'stopped')).toHaveLength(1);
  });

  it('refuses a path outside the capture root', async () => {
    await start();
    await server.waitFor('hello');
    const a = assignment({ filePath: '/etc/evil.cap' });
    server.send({ type: 'start', assignment: a });
    const stopped = await server.waitFor('stopped', (m) => m.sessionId === a.sessionId);
    expect(stopped.error?.code).toBe('InvalidCapturePath');
  });

  it('refuses a path that holds a file as it refuses any unusable path, and never serves that file', async () => {
    const agent = await start();
    await server.waitFor('hello');
    const root = path.join(dir, 'captures');
    await mkdir(root, { recursive: true });
    const secret = path.join(root, 'someone-elses.cap');
    await writeFile(secret, 'not yours', { mode: 0o600 });
    const taken = assignment({ filePath: secret });
    // A folder on the way is a file: mkdir fails with ENOTDIR rather than EEXIST.
    const blocked = assignment({ filePath: path.join(secret, 'x.cap') });
    const refusals = [];
    for (const a of [taken, blocked]) {
      server.send({ type: 'start', assignment: a });
      const stopped = await server.waitFor('stopped', (m) => m.sessionId === a.sessionId);
      expect(stopped.files).toEqual([]);
      refusals.push({ ...stopped.error, message: stopped.error?.message.replace(a.filePath, 'P') });
    }
    // The same refusal, which says nothing of what lies there.
    expect(refusals[0]).toEqual(refusals[1]);
    expect(refusals[0]?.code).toBe('LocalFileFailed');
    expect(refusals[0]?.message).not.toMatch(/exist|ENOTDIR|EEXIST|not a directory/i);

    const read = async (sessionId: string) => {
      const requestId = randomUUID();
      server.send({ type: 'readFile', requestId, sessionId, path: secret, offset: 0 });
      return server.waitFor('readFileEnd', (m) => m.requestId === requestId);
    };
    // Not while the agent knows the session, not once it has forgotten it, not for a session
    // it never ran.
    expect((await read(taken.sessionId)).error?.code).toBe('InvalidCapturePath');
    server.send({ type: 'ack', sessionId: taken.sessionId });
    await until(() => !agent.sessions().some((s) => s.sessionId === taken.sessionId));
    expect((await read(taken.sessionId)).error?.code).toBe('InvalidCapturePath');
    expect((await read(randomUUID())).error?.code).toBe('InvalidCapturePath');
    expect(server.invalid.some((frame) => frame.includes('not yours'))).toBe(false);
  });

  it('ignores invalid messages and stays connected', async () => {
    const agent = await start();
    await server.waitFor('hello');
    server.sendRaw('not json');
    server.sendRaw(JSON.stringify({ type: 'start', assignment: { sessionId: 'x' } }));
    server.sendRaw(JSON.stringify({ type: 'ack', sessionId: 'not-a-uuid' }));
    const a = assignment({ filters: [{ protocol: 'SCTP' }] });
    server.send({ type: 'start', assignment: a });
    await server.waitFor('stopped', (m) => m.sessionId === a.sessionId);
    expect(agent.connected).toBe(true);
    expect(server.connectionCount).toBe(1);
    expect(logLines.filter((l) => l.includes('ignored an invalid message'))).toHaveLength(3);
  });

  it('reconnects with backoff, and its hello re-sends every unacknowledged session', async () => {
    const agent = await start();
    await server.waitFor('hello');
    const a = assignment({ filters: [{ localPort: 'x' }] });
    server.send({ type: 'start', assignment: a });
    await server.waitFor('stopped', (m) => m.sessionId === a.sessionId);

    await server.stop();
    await until(() => !agent.connected);
    await new Promise((r) => setTimeout(r, 300)); // a few failed dials
    await server.restart();
    const hello = await server.waitFor('hello', (_m, r) => r.connection === 1);
    expect(hello.sessions).toEqual([
      expect.objectContaining({ sessionId: a.sessionId, state: 'Stopped', stopReason: 'Error' }),
    ]);
    server.send({ type: 'ack', sessionId: a.sessionId });
    await until(() => agent.sessions().length === 0);
    // The entry leaves memory at once and the disk right after.
    await until(() =>
      stat(journalFile(a.sessionId)).then(
        () => false,
        () => true,
      ),
    );
  });

  it('takes a silent connection for dead and dials again', async () => {
    server.silent = true;
    const agent = await start({ deadAfterMs: 600 });
    await server.waitFor('hello');
    // The welcome counts as a word from the server; after it, nothing.
    await server.waitFor('hello', (_m, r) => r.connection === 1, 5000);
    expect(agent.connected).toBe(true);
    expect(logLines.join('')).toMatch(/no word from the server/);
  });

  it('stays connected while the server pings', async () => {
    const pinging = await startFakeServer({ pingIntervalMs: 100, enrollToken: server.enrollToken });
    try {
      const agent = await start({ serverUrl: pinging.url, deadAfterMs: 1000 });
      await pinging.waitFor('hello');
      await new Promise((r) => setTimeout(r, 2500));
      expect(pinging.connectionCount).toBe(1);
      await agent.close();
    } finally {
      await pinging.close();
    }
  });

  it('resends the final state when asked to stop a session that is over', async () => {
    await start();
    await server.waitFor('hello');
    const a = assignment({ filters: [{ remotePort: '99999' }] });
    server.send({ type: 'start', assignment: a });
    await server.waitFor('stopped', (m) => m.sessionId === a.sessionId);
    server.send({ type: 'stop', sessionId: a.sessionId, reason: 'ManualIntervention' });
    await until(() => server.received.filter((r) => r.message.type === 'stopped').length === 2);
  });

  it('on 401 forgets its credential and exits, and on deregistered too', async () => {
    const agent = await start();
    await server.waitFor('hello');
    server.credentials.clear();
    server.dropConnections();
    const exit = await agent.exited;
    expect(exit.reason).toBe('unauthorized');
    expect(exit.reason === 'unauthorized' && exit.error.message).toMatch(/HTTP 401/);
    await expect(stat(path.join(dir, 'data', 'agent.json'))).rejects.toThrow(/ENOENT/);

    // Enrolling again works, and a deregistration ends the agent the same way.
    const again = await start();
    await server.waitFor('hello', (_m, r) => r.connection === 1);
    server.send({ type: 'deregistered' });
    expect(await again.exited).toEqual({ reason: 'deregistered' });
    await expect(stat(path.join(dir, 'data', 'agent.json'))).rejects.toThrow(/ENOENT/);
  });

  it('close() is safe twice and ends with reason closed', async () => {
    const agent = await start();
    await nextEvent(agent, 'connected');
    await Promise.all([agent.close(), agent.close()]);
    await agent.close();
    expect(await agent.exited).toEqual({ reason: 'closed' });
    expect(agent.connected).toBe(false);
  });
});

describe('recovery after a crash', () => {
  it('repairs the files of captures that were running and reports them AgentRestarted', async () => {
    const agent = await start();
    await agent.close();
    const captures = path.join(dir, 'captures');
    await mkdir(captures, { recursive: true });
    const sessions = path.join(dir, 'data', 'sessions');

    // A single-file capture cut mid-record, and one that never got its header written.
    const single = assignment();
    await writeFile(single.filePath, pcapBytes(5, 30));
    const empty = assignment();
    await writeFile(empty.filePath, Buffer.alloc(10));
    // A ring whose newest file was cut mid-record.
    const ring = assignment({
      continuousCapture: true,
      filePath: path.join(captures, 'ring.cap'),
      captureSettings: { fileCount: 3, fileSizeInBytes: 1000, sessionTimeLimitInSeconds: 600 },
    });
    await writeFile(path.join(captures, 'ring_2.cap'), pcapBytes(4));
    await writeFile(path.join(captures, 'ring_3.cap'), pcapBytes(2, 50));
    // Started before the crash; its start time and drops survive.
    const startTime = new Date(Date.now() - 60_000).toISOString();
    const entries: JournalEntry[] = [
      {
        assignment: single,
        state: 'Running',
        capturePath: single.filePath,
        startTime,
        progress: { packets: 3, bytes: 300, kernelDrops: 2, at: startTime },
      },
      { assignment: empty, state: 'Running', capturePath: empty.filePath },
      { assignment: ring, state: 'Running', capturePath: ring.filePath, startTime },
    ];
    for (const entry of entries) {
      await writeFile(
        path.join(sessions, `${entry.assignment.sessionId}.json`),
        JSON.stringify(entry),
      );
    }
    // A write the crash interrupted, and a file that is not an entry.
    await writeFile(path.join(sessions, `${single.sessionId}.json.tmp-0123456789ab`), '{');
    await writeFile(path.join(sessions, `${randomUUID()}.json`), 'garbage');

    const restarted = await start();
    const hello = await server.waitFor('hello');
    const byId = new Map(hello.sessions.map((s) => [s.sessionId, s]));
    const frame = 16 + 60;
    expect(byId.get(single.sessionId)).toMatchObject({
      state: 'Stopped',
      stopReason: 'AgentRestarted',
      startTime,
      progress: { packets: 5, bytes: 24 + 5 * frame, kernelDrops: 2 },
      files: [single.filePath],
    });
    expect(byId.get(empty.sessionId)).toMatchObject({
      state: 'Stopped',
      stopReason: 'AgentRestarted',
      progress: { packets: 0, bytes: 0 },
      files: [],
    });
    expect(byId.get(ring.sessionId)).toMatchObject({
      state: 'Stopped',
      stopReason: 'AgentRestarted',
      progress: { packets: 6, bytes: 2 * 24 + 6 * frame },
      files: [path.join(captures, 'ring_2.cap'), path.join(captures, 'ring_3.cap')],
    });
    expect(byId.size).toBe(3);
    expect(await countRecords(single.filePath)).toBe(5);
    expect((await stat(single.filePath)).size).toBe(24 + 5 * frame);
    expect(await countRecords(path.join(captures, 'ring_3.cap'))).toBe(2);
    const names = await readdir(sessions);
    expect(names.filter((n) => n.includes('.tmp-'))).toEqual([]);
    expect(names.filter((n) => n.endsWith('.unreadable'))).toHaveLength(1);

    // The journal holds the recovered state until the server acknowledges it.
    const onDisk = JSON.parse(
      await readFile(journalFile(single.sessionId), 'utf8'),
    ) as JournalEntry;
    expect(onDisk).toMatchObject({ state: 'Stopped', stopReason: 'AgentRestarted' });
    for (const id of byId.keys()) server.send({ type: 'ack', sessionId: id });
    await until(() => restarted.sessions().length === 0);
  });
});

describe('helpers', () => {
  it('backs off exponentially with jitter, up to the maximum', () => {
    expect(backoffDelay(0, 250, 15_000, () => 0)).toBe(125);
    expect(backoffDelay(0, 250, 15_000, () => 1)).toBe(250);
    expect(backoffDelay(3, 250, 15_000, () => 1)).toBe(2000);
    expect(backoffDelay(50, 250, 15_000, () => 1)).toBe(15_000);
    expect(backoffDelay(50, 250, 15_000, () => 0)).toBe(7500);
  });
});
