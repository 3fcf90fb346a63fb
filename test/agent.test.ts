/**
 * The agent end to end on the lab: real tcpdump on a veth inside a network namespace, driven
 * through the channel protocol by a fake server (test/support/fake-server.ts), with tshark
 * as the judge of the capture files. The crash and signal tests run the built binary.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createAgent, type Agent, type AgentOptions } from '../src/agent/agent.js';
import { createJsonLineLog } from '../src/agent/agent-log.js';
import type { JournalEntry } from '../src/agent/journal.js';
import { startFakeServer, type FakeServer } from './support/fake-server.js';
import type { CaptureAssignment } from '../src/model/channel.js';
import { isRoot, run } from './lab/exec.js';
import { createLab, type Lab } from './lab/lab.js';
import { send, serve, type Flow, type Server } from './lab/traffic.js';
import { tsharkRead } from './lab/tshark.js';

if (!isRoot) {
  console.warn('agent: SKIPPED — lab tests need root (network namespaces, tcpdump)');
}

const cli = fileURLToPath(new URL('../dist/src/cli/main.js', import.meta.url));
const subscriptionId = randomUUID();
const UDP_5300 = [{ protocol: 'UDP', remotePort: '5300' }];

describe.skipIf(!isRoot)('wirewatch agent on the lab (root)', () => {
  let lab: Lab;
  let echo: Server;
  let dir: string;
  let server: FakeServer;
  let agents: Agent[];
  let children: ChildProcess[];
  let nextPort = 47000;
  let logLines: string[];

  beforeAll(async () => {
    lab = await createLab();
    echo = await serve(lab, lab.b, [{ proto: 'udp', host: lab.b.ipv4, port: 5300 }]);
  });
  afterAll(async () => {
    try {
      await echo?.close();
    } finally {
      await lab?.close();
    }
  });

  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'wirewatch-agent-lab-'));
    server = await startFakeServer();
    agents = [];
    children = [];
    logLines = [];
  });
  afterEach(async () => {
    try {
      for (const agent of agents) await agent.close();
      for (const child of children) {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      }
    } finally {
      await server.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  const captures = () => path.join(dir, 'captures');
  const dataDir = () => path.join(dir, 'data');
  const journalFile = (id: string) => path.join(dataDir(), 'sessions', `${id}.json`);

  function options(overrides: Partial<AgentOptions> = {}): AgentOptions {
    return {
      serverUrl: server.url,
      enrollToken: server.enrollToken,
      subscriptionId,
      resourceGroup: 'lab',
      name: 'lab-a',
      location: 'westeurope',
      interface: lab.a.iface,
      netns: lab.a.netns,
      dataDir: dataDir(),
      captureRoot: captures(),
      backoffMinMs: 50,
      backoffMaxMs: 500,
      progressIntervalMs: 300,
      ackWaitMs: 300,
      log: createJsonLineLog((line) => logLines.push(line), { minLevel: 'debug' }),
      ...overrides,
    };
  }

  async function startAgent(overrides: Partial<AgentOptions> = {}): Promise<Agent> {
    const agent = await createAgent(options(overrides));
    agents.push(agent);
    await server.waitFor('hello', (_m, r) => r.connection === server.connectionCount - 1);
    return agent;
  }

  function assignment(overrides: Partial<CaptureAssignment> = {}): CaptureAssignment {
    const sessionId = randomUUID();
    return {
      sessionId,
      resourceId: `/subscriptions/${subscriptionId}/resourceGroups/NetworkWatcherRG/providers/Microsoft.Network/networkWatchers/NetworkWatcher_westeurope/packetCaptures/pc-${sessionId.slice(0, 8)}`,
      filePath: path.join(captures(), `${sessionId}.cap`),
      filters: UDP_5300,
      bytesToCapturePerPacket: 0,
      totalBytesPerSession: 1073741824,
      timeLimitInSeconds: 300,
      continuousCapture: false,
      createdAt: new Date().toISOString(),
      ...overrides,
    };
  }

  /** `count` UDP datagrams from a to b's echo server: 2 × count packets on a's veth. */
  async function udp(count: number, size = 100): Promise<void> {
    const flow: Flow = {
      proto: 'udp',
      src: lab.a.ipv4,
      sport: nextPort++,
      dst: lab.b.ipv4,
      dport: 5300,
      count,
      size,
    };
    const [result] = await send(lab, lab.a, [flow]);
    expect(result!.echoed).toBe(count);
  }

  async function udpPackets(file: string): Promise<number> {
    return (await tsharkRead(file)).filter((p) => p.proto === 'udp').length;
  }

  async function startSession(a: CaptureAssignment) {
    const request = server.send({ type: 'start', assignment: a });
    const started = await server.waitFor('started', (m) => m.sessionId === a.sessionId);
    return { request, started };
  }

  async function readJournal(id: string): Promise<JournalEntry> {
    return JSON.parse(await readFile(journalFile(id), 'utf8')) as JournalEntry;
  }

  async function until(check: () => boolean | Promise<boolean>, timeoutMs = 15_000) {
    const deadline = Date.now() + timeoutMs;
    while (!(await check())) {
      if (Date.now() > deadline) throw new Error('condition not met in time');
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  it('starts at once, reports progress, and stops on request with every packet in the file', async () => {
    const agent = await startAgent();
    const a = assignment();
    const { request, started } = await startSession(a);
    // started follows the start, well within the second the protocol promises (the bound is
    // loose: the test machine may be busy).
    expect(started.received.seq).toBeGreaterThan(request.seq);
    expect(started.received.at - request.at).toBeLessThan(5000);
    expect(Date.parse(started.startTime)).toBeGreaterThanOrEqual(request.at - 1000);

    await udp(5);
    const progress = await server.waitFor(
      'progress',
      (m) => m.sessionId === a.sessionId && m.progress.packets >= 10,
    );
    // bytes is the file's size, which trails tcpdump's count by its output buffer (up to
    // 4 KiB) until the capture ends; the final figures below are exact.
    expect(progress.progress.bytes).toBeGreaterThanOrEqual(0);
    expect(agent.sessions()).toEqual([
      expect.objectContaining({ sessionId: a.sessionId, state: 'Running' }),
    ]);

    const stop = server.send({
      type: 'stop',
      sessionId: a.sessionId,
      reason: 'ManualIntervention',
    });
    const stopped = await server.waitFor('stopped', (m) => m.sessionId === a.sessionId);
    expect(stopped.received.seq).toBeGreaterThan(stop.seq);
    expect(stopped).toMatchObject({
      stopReason: 'ManualIntervention',
      startTime: started.startTime,
      files: [a.filePath],
      progress: { packets: 10, kernelDrops: 0 },
    });
    expect(stopped.error).toBeUndefined();
    expect(stopped.progress.bytes).toBe((await stat(a.filePath)).size);
    expect(await udpPackets(a.filePath)).toBe(10);

    // Messages of the session, in order: started, progress…, stopped.
    const kinds = server.received
      .filter((r) => 'sessionId' in r.message && r.message.sessionId === a.sessionId)
      .map((r) => r.message.type);
    expect(kinds[0]).toBe('started');
    expect(kinds.at(-1)).toBe('stopped');
    expect(new Set(kinds.slice(1, -1))).toEqual(new Set(['progress']));

    expect(await readJournal(a.sessionId)).toMatchObject({ state: 'Stopped' });
    server.send({ type: 'ack', sessionId: a.sessionId });
    await until(async () => (await readdir(path.join(dataDir(), 'sessions'))).length === 0);
  });

  it('reports progress at least every few seconds while a capture runs', async () => {
    await startAgent({ progressIntervalMs: undefined });
    const a = assignment();
    await startSession(a);
    await new Promise((r) => setTimeout(r, 5500));
    const reports = server.received.filter(
      (r) => r.message.type === 'progress' && r.message.sessionId === a.sessionId,
    );
    expect(reports.length).toBeGreaterThanOrEqual(2);
    server.send({ type: 'stop', sessionId: a.sessionId, reason: 'ManualIntervention' });
    await server.waitFor('stopped', (m) => m.sessionId === a.sessionId);
  });

  it('stops at the time limit with TimeExceeded', async () => {
    await startAgent();
    const a = assignment({ timeLimitInSeconds: 2 });
    await startSession(a);
    await udp(3);
    const stopped = await server.waitFor('stopped', (m) => m.sessionId === a.sessionId);
    expect(stopped.stopReason).toBe('TimeExceeded');
    // The start is when tcpdump listened, the stop its deadline: exactly the limit apart.
    expect(Date.parse(stopped.stopTime) - Date.parse(stopped.startTime!)).toBe(2000);
    expect(stopped.progress.packets).toBe(6);
    expect(await udpPackets(a.filePath)).toBe(6);
  });

  it('stops at the byte limit with SessionBytesExceeded and a file within it', async () => {
    await startAgent();
    const a = assignment({ totalBytesPerSession: 2000 });
    await startSession(a);
    await udp(20, 200);
    const stopped = await server.waitFor('stopped', (m) => m.sessionId === a.sessionId);
    expect(stopped.stopReason).toBe('SessionBytesExceeded');
    const size = (await stat(a.filePath)).size;
    expect(size).toBeLessThanOrEqual(2000);
    expect(stopped.progress.bytes).toBe(size);
    const packets = await udpPackets(a.filePath);
    expect(packets).toBe(stopped.progress.packets);
    expect(packets).toBeGreaterThan(0);
  });

  it('runs two sessions at once, each with its own filter and stop reason', async () => {
    await startAgent();
    const udpOnly = assignment();
    const tcpOnly = assignment({ filters: [{ protocol: 'TCP' }] });
    server.send({ type: 'start', assignment: udpOnly });
    server.send({ type: 'start', assignment: tcpOnly });
    await server.waitFor('started', (m) => m.sessionId === udpOnly.sessionId);
    await server.waitFor('started', (m) => m.sessionId === tcpOnly.sessionId);
    await udp(4);
    server.send({ type: 'stop', sessionId: udpOnly.sessionId, reason: 'TimeExceeded' });
    server.send({ type: 'stop', sessionId: tcpOnly.sessionId, reason: 'TargetDeleted' });
    const first = await server.waitFor('stopped', (m) => m.sessionId === udpOnly.sessionId);
    const second = await server.waitFor('stopped', (m) => m.sessionId === tcpOnly.sessionId);
    expect(first).toMatchObject({ stopReason: 'TimeExceeded', progress: { packets: 8 } });
    expect(second).toMatchObject({ stopReason: 'TargetDeleted', progress: { packets: 0 } });
    expect(await udpPackets(udpOnly.filePath)).toBe(8);
    expect(await tsharkRead(tcpOnly.filePath)).toEqual([]);
  });

  it('writes a continuous capture into a ring of files', async () => {
    await startAgent();
    const a = assignment({
      continuousCapture: true,
      filePath: path.join(captures(), 'ring.cap'),
      captureSettings: { fileCount: 3, fileSizeInBytes: 1500, sessionTimeLimitInSeconds: 600 },
    });
    await startSession(a);
    await udp(20, 200);
    await new Promise((r) => setTimeout(r, 1500));
    server.send({ type: 'stop', sessionId: a.sessionId, reason: 'ManualIntervention' });
    const stopped = await server.waitFor('stopped', (m) => m.sessionId === a.sessionId);
    expect(stopped.stopReason).toBe('ManualIntervention');
    expect(stopped.progress.packets).toBe(40);
    expect(stopped.files).toHaveLength(3);
    for (const file of stopped.files) {
      expect(path.basename(file)).toMatch(/^ring_\d+\.cap$/);
      expect((await stat(file)).size).toBeLessThanOrEqual(1500);
      expect(await udpPackets(file)).toBeGreaterThan(0);
    }
  });

  it('keeps capturing while the server is away, and says so in the hello when it is back', async () => {
    const agent = await startAgent();
    const a = assignment();
    const { started } = await startSession(a);
    await server.stop();
    await until(() => !agent.connected);
    await udp(3);
    // The journal follows the capture while nobody listens.
    await until(() => (agent.sessions()[0]?.progress?.packets ?? 0) >= 6);
    await server.restart();
    const hello = await server.waitFor('hello', (_m, r) => r.connection === 1);
    expect(hello.sessions).toEqual([
      expect.objectContaining({
        sessionId: a.sessionId,
        state: 'Running',
        startTime: started.startTime,
        progress: expect.objectContaining({ packets: 6 }),
      }),
    ]);
    server.send({ type: 'stop', sessionId: a.sessionId, reason: 'ManualIntervention' });
    const stopped = await server.waitFor('stopped', (m) => m.sessionId === a.sessionId);
    expect(stopped.received.connection).toBe(1);
    expect(await udpPackets(a.filePath)).toBe(6);
  });

  it('re-sends a final state that was not acknowledged, and forgets it after the ack', async () => {
    const agent = await startAgent();
    const a = assignment({ timeLimitInSeconds: 1 });
    await startSession(a);
    // The stop happens while the server is away: nothing can be sent then.
    await server.stop();
    await until(() => agent.sessions()[0]?.state === 'Stopped');
    await server.restart();
    const hello = await server.waitFor('hello', (_m, r) => r.connection === 1);
    expect(hello.sessions).toEqual([
      expect.objectContaining({
        sessionId: a.sessionId,
        state: 'Stopped',
        stopReason: 'TimeExceeded',
        files: [a.filePath],
      }),
    ]);
    expect(server.received.filter((r) => r.message.type === 'stopped')).toEqual([]);
    server.send({ type: 'ack', sessionId: a.sessionId });
    await until(() => agent.sessions().length === 0);
    // The entry leaves memory at once and the disk right after.
    await until(() =>
      stat(journalFile(a.sessionId)).then(
        () => false,
        () => true,
      ),
    );
    await stat(a.filePath); // the capture itself stays
  });

  it('close() finishes every capture: file complete, journal Stopped ManualIntervention', async () => {
    const agent = await startAgent();
    const a = assignment();
    await startSession(a);
    await udp(4);
    await agent.close();
    const stopped = await server.waitFor('stopped', (m) => m.sessionId === a.sessionId, 1000);
    expect(stopped).toMatchObject({ stopReason: 'ManualIntervention', progress: { packets: 8 } });
    expect(await readJournal(a.sessionId)).toMatchObject({
      state: 'Stopped',
      stopReason: 'ManualIntervention',
      files: [a.filePath],
      progress: { packets: 8 },
    });
    expect(await udpPackets(a.filePath)).toBe(8);
    expect(await agent.exited).toEqual({ reason: 'closed' });
  });

  it('stops everything with TargetDeleted when the VM is deregistered', async () => {
    const agent = await startAgent();
    const a = assignment();
    await startSession(a);
    server.send({ type: 'deregistered' });
    const stopped = await server.waitFor('stopped', (m) => m.sessionId === a.sessionId);
    expect(stopped.stopReason).toBe('TargetDeleted');
    expect(await agent.exited).toEqual({ reason: 'deregistered' });
    await expect(stat(path.join(dataDir(), 'agent.json'))).rejects.toThrow(/ENOENT/);
  });

  it('stops everything with TargetDeleted when the credential is refused', async () => {
    const agent = await startAgent();
    const a = assignment();
    await startSession(a);
    server.credentials.clear();
    server.dropConnections();
    const exit = await agent.exited;
    expect(exit.reason).toBe('unauthorized');
    expect(await readJournal(a.sessionId)).toMatchObject({
      state: 'Stopped',
      stopReason: 'TargetDeleted',
    });
    await expect(stat(path.join(dataDir(), 'agent.json'))).rejects.toThrow(/ENOENT/);
  });

  describe('the agent binary', () => {
    function spawnAgent() {
      const child = spawn(
        process.execPath,
        [
          cli,
          'agent',
          '--server',
          server.url,
          '--subscription',
          subscriptionId,
          '--resource-group',
          'lab',
          '--name',
          'lab-a',
          '--location',
          'westeurope',
          '--interface',
          lab.a.iface,
          '--netns',
          lab.a.netns,
          '--data-dir',
          dataDir(),
          '--capture-root',
          captures(),
        ],
        {
          stdio: ['ignore', 'ignore', 'pipe'],
          // The token comes by environment, as a service unit would pass it; TMPDIR keeps
          // tcpdump's scratch folder inside the test's folder even when the agent is killed.
          env: { ...process.env, TMPDIR: dir, WIREWATCH_ENROLL_TOKEN: server.enrollToken },
        },
      );
      children.push(child);
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const exited = new Promise<{ code: number | null; signal: string | null; stderr: string }>(
        (resolve) => child.once('exit', (code, signal) => resolve({ code, signal, stderr })),
      );
      return { child, exited, stderr: () => stderr };
    }

    async function tcpdumpGone(): Promise<boolean> {
      const { stdout } = await run('ip', ['netns', 'pids', lab.a.netns], { check: false });
      for (const pid of stdout.split(/\s+/).filter(Boolean)) {
        const comm = await readFile(`/proc/${pid}/comm`, 'utf8').catch(() => '');
        if (comm.trim() === 'tcpdump') return false;
      }
      return true;
    }

    it('recovers after kill -9: the capture is AgentRestarted and its file holds every packet', async () => {
      const first = spawnAgent();
      await server.waitFor('hello', (_m, r) => r.connection === 0);
      const a = assignment();
      await startSession(a);
      await udp(6);
      // Let the kernel hand the packets to tcpdump, then kill the agent outright.
      await new Promise((r) => setTimeout(r, 1500));
      first.child.kill('SIGKILL');
      await first.exited;

      // Restarted at once, as a service manager does: tcpdump may still be finishing the file,
      // and the new agent must wait for it before it repairs and reports the file.
      const second = spawnAgent();
      const hello = await server.waitFor('hello', (_m, r) => r.connection === 1);
      expect(hello.sessions).toEqual([
        expect.objectContaining({
          sessionId: a.sessionId,
          state: 'Stopped',
          stopReason: 'AgentRestarted',
          files: [a.filePath],
          progress: expect.objectContaining({ packets: 12, bytes: (await stat(a.filePath)).size }),
        }),
      ]);
      expect(await udpPackets(a.filePath)).toBe(12);
      expect(await tcpdumpGone()).toBe(true);
      expect(await readJournal(a.sessionId)).toMatchObject({ stopReason: 'AgentRestarted' });
      expect(server.enrollments).toHaveLength(1);
      server.send({ type: 'ack', sessionId: a.sessionId });
      await until(async () => (await readdir(path.join(dataDir(), 'sessions'))).length === 0);

      second.child.kill('SIGTERM');
      expect((await second.exited).code).toBe(0);
    });

    it('repairs the file when tcpdump is killed with the agent (a cgroup OOM kill)', async () => {
      const first = spawnAgent();
      await server.waitFor('hello', (_m, r) => r.connection === 0);
      const a = assignment();
      await startSession(a);
      // Enough for several of tcpdump's 4 KiB writes, so the file ends wherever one stopped.
      await udp(60, 333);
      await new Promise((r) => setTimeout(r, 1500));
      const { stdout } = await run('ip', ['netns', 'pids', lab.a.netns]);
      const victims = [first.child.pid!];
      for (const pid of stdout.split(/\s+/).filter(Boolean)) {
        const comm = await readFile(`/proc/${pid}/comm`, 'utf8').catch(() => '');
        if (comm.trim() === 'tcpdump') victims.push(Number(pid));
      }
      expect(victims).toHaveLength(2);
      for (const pid of victims) process.kill(pid, 'SIGKILL');
      await first.exited;
      await until(tcpdumpGone, 10_000);
      const before = (await stat(a.filePath)).size;

      const second = spawnAgent();
      const hello = await server.waitFor('hello', (_m, r) => r.connection === 1);
      const [session] = hello.sessions;
      expect(session).toMatchObject({
        sessionId: a.sessionId,
        state: 'Stopped',
        stopReason: 'AgentRestarted',
        files: [a.filePath],
      });
      // What tcpdump had written is kept up to the last whole packet; tshark reads all of it.
      const after = (await stat(a.filePath)).size;
      expect(before).toBeGreaterThan(24);
      expect(after).toBeLessThanOrEqual(before);
      if (after < before) expect(second.stderr()).toMatch(/cut a damaged end off a capture file/);
      expect(before - after).toBeLessThan(16 + 1500);
      expect(session!.progress!.bytes).toBe(after);
      const packets = await udpPackets(a.filePath);
      expect(packets).toBe(session!.progress!.packets);
      expect(packets).toBeGreaterThan(0);
      second.child.kill('SIGTERM');
      expect((await second.exited).code).toBe(0);
    });

    it('on SIGTERM finishes the capture, reports it stopped, and exits 0', async () => {
      const agent = spawnAgent();
      await server.waitFor('hello');
      const a = assignment();
      await startSession(a);
      await udp(5);
      agent.child.kill('SIGTERM');
      const { code, stderr } = await agent.exited;
      expect(code, stderr).toBe(0);
      const stopped = await server.waitFor('stopped', (m) => m.sessionId === a.sessionId, 1000);
      expect(stopped).toMatchObject({
        stopReason: 'ManualIntervention',
        progress: { packets: 10 },
      });
      expect(await udpPackets(a.filePath)).toBe(10);
      expect(await readJournal(a.sessionId)).toMatchObject({
        state: 'Stopped',
        stopReason: 'ManualIntervention',
      });
      expect(await tcpdumpGone()).toBe(true);
      // JSON lines, and no secret among them.
      const lines = stderr.trim().split('\n');
      for (const line of lines) expect(JSON.parse(line)).toHaveProperty('msg');
      expect(stderr).not.toContain(server.enrollToken);
      for (const credential of server.credentials) expect(stderr).not.toContain(credential);
    });
  });
});
