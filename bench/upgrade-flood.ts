/**
 * bench/upgrade-flood: issue 9's memory attack on a `wirewatch server` process. N connections
 * ask for a WebSocket upgrade without credentials (on /healthz, an unknown path, the agent
 * channel and a live stream) or with the admin token on an API route, and each sends at once
 * the head of a frame announcing 15 MiB and then the 15 MiB. A server that upgrades them (or
 * reads on) buffers up to its frame limit per connection; one that refuses before upgrading
 * holds nothing. The server's resident memory is read from /proc before, at the end of the
 * writes, and its peak (VmHWM), and printed as ratios to the idle figure measured in the same
 * run.
 *
 * Run: `npm run build && node dist/bench/upgrade-flood.js [--connections 120] [--server-js
 * PATH]` (`--server-js` points at another build's dist/src/cli/main.js to measure it the same
 * way, e.g. the commit before the fix).
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const MIB = 1024 * 1024;

function flag(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i < 0 ? fallback : (process.argv[i + 1] ?? fallback);
}

async function memory(pid: number): Promise<{ rss: number; hwm: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1]);
  return { rss: kb('VmRSS') * 1024, hwm: kb('VmHWM') * 1024 };
}

/** One attacking connection; resolves with what the server did when it closed, or after `holdMs`. */
function attack(
  port: number,
  target: string,
  token: string | undefined,
  payload: Buffer,
  holdMs: number,
): Promise<{ upgraded: boolean; closedByServer: boolean }> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    let head = '';
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ upgraded: head.includes(' 101 '), closedByServer: false });
    }, holdMs);
    socket.on('data', (d: Buffer) => {
      if (head.length < 200) head += d.toString('latin1');
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve({ upgraded: head.includes(' 101 '), closedByServer: true });
    });
    socket.write(
      [
        `GET ${target} HTTP/1.1`,
        `Host: 127.0.0.1:${port}`,
        'Connection: Upgrade',
        'Upgrade: websocket',
        'Sec-WebSocket-Version: 13',
        'Sec-WebSocket-Key: MDEyMzQ1Njc4OWFiY2RlZg==',
        ...(token ? [`Authorization: Bearer ${token}`] : []),
        '',
        '',
      ].join('\r\n'),
    );
    socket.write(payload);
  });
}

async function main(): Promise<void> {
  const connections = Number(flag('connections', '120'));
  const holdMs = Number(flag('hold-ms', '8000'));
  const serverJs = path.resolve(flag('server-js', path.resolve(here, '../src/cli/main.js')));
  const dataDir = await mkdtemp(path.join(tmpdir(), 'ww-flood-'));
  const adminToken = `wwadmin_flood_${Date.now()}`;
  const server = spawn(
    process.execPath,
    [serverJs, 'server', '--data-dir', dataDir, '--listen', '127.0.0.1:0', '--log-level', 'error'],
    {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, WIREWATCH_ADMIN_TOKEN: adminToken },
    },
  );
  try {
    const url = await new Promise<string>((resolve, reject) => {
      let err = '';
      server.stderr.on('data', (d: Buffer) => {
        err += d.toString();
        const m = /listening on (http:\/\/\S+)/.exec(err);
        if (m) resolve(m[1]!);
      });
      server.once('exit', (code) => reject(new Error(`server exited ${code}: ${err}`)));
    });
    const port = Number(new URL(url).port);
    await new Promise((r) => setTimeout(r, 1000));
    const idle = await memory(server.pid!);

    // One frame head announcing 15 MiB (masked, 64-bit length), then the 15 MiB: one buffer,
    // written to every socket (Node keeps a reference, not a copy).
    const frame = Buffer.alloc(14 + 15 * MIB, 0x61);
    frame[0] = 0x82;
    frame[1] = 0x80 | 127;
    frame.writeBigUInt64BE(BigInt(15 * MIB), 2);
    const sub = '00000000-0000-0000-0000-000000000000';
    const targets: [string, string | undefined][] = [
      ['/healthz', undefined],
      ['/no/such/path', undefined],
      ['/api/v1/agent/channel', undefined],
      [
        `/subscriptions/${sub}/resourceGroups/rg/providers/Microsoft.Network/networkWatchers/nw/packetCaptures/pc/stream?api-version=2025-05-01`,
        undefined,
      ],
      ['/api/v1/subscriptions', adminToken],
    ];
    let peak = idle;
    const sampler = setInterval(() => {
      void memory(server.pid!).then((m) => {
        if (m.rss > peak.rss) peak = m;
      });
    }, 100);
    const results = await Promise.all(
      Array.from({ length: connections }, (_, i) => {
        const [target, token] = targets[i % targets.length]!;
        return attack(port, target, token, frame, holdMs);
      }),
    );
    clearInterval(sampler);
    const after = await memory(server.pid!);
    const health = await fetch(`${url}/healthz`).then((r) => r.status);
    const upgraded = results.filter((r) => r.upgraded).length;
    const cut = results.filter((r) => r.closedByServer).length;
    const mib = (n: number) => `${(n / MIB).toFixed(0)} MiB`;
    console.log(`server: ${serverJs}`);
    console.log(
      `${connections} connections × 15 MiB unfinished frame (${targets.length} targets, held up to ${holdMs} ms)`,
    );
    console.log(`upgraded: ${upgraded}; closed by the server within the hold: ${cut}`);
    console.log(
      `RSS idle ${mib(idle.rss)}; peak during the flood ${mib(peak.rss)} (${(peak.rss / idle.rss).toFixed(2)}× idle); after ${mib(after.rss)}; VmHWM ${mib(after.hwm)} (${(after.hwm / idle.rss).toFixed(2)}× idle)`,
    );
    console.log(`GET /healthz afterwards: ${health}`);
  } finally {
    server.kill('SIGTERM');
    await new Promise((r) => server.once('exit', r));
    await rm(dataDir, { recursive: true, force: true });
  }
}

await main();
