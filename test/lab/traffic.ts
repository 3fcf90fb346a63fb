import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Lab, LabHost } from './lab.js';

const script = fileURLToPath(new URL('./traffic.mjs', import.meta.url));

export interface Listener {
  readonly proto: 'udp' | 'tcp';
  readonly host: string;
  readonly port: number;
}

export interface Flow {
  readonly proto: 'udp' | 'tcp';
  readonly src: string;
  readonly sport: number;
  readonly dst: string;
  readonly dport: number;
  /** UDP: datagrams, each echoed back. */
  readonly count?: number;
  /** UDP: payload bytes per datagram. */
  readonly size?: number;
  /** TCP: bytes written, then echoed back. */
  readonly bytes?: number;
}

export interface Server {
  close(): Promise<void>;
}

/** Starts echo servers inside a lab host; resolves once they listen. */
export async function serve(
  lab: Lab,
  host: LabHost,
  listeners: readonly Listener[],
): Promise<Server> {
  void lab;
  const child: ChildProcess = spawn(
    'ip',
    ['netns', 'exec', host.netns, process.execPath, script, 'serve', JSON.stringify(listeners)],
    { stdio: ['pipe', 'pipe', 'inherit'] },
  );
  await new Promise<void>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('ready')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`traffic server exited ${code}`)));
  });
  return {
    close: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.stdin!.end();
        setTimeout(() => child.kill('SIGKILL'), 3000).unref();
      }),
  };
}

/** Sends flows from a lab host, one after another; resolves with what was echoed. */
export async function send(
  lab: Lab,
  host: LabHost,
  flows: readonly Flow[],
): Promise<(Flow & { sent: number; echoed: number })[]> {
  const { stdout } = await lab.exec(host, process.execPath, [
    script,
    'send',
    JSON.stringify(flows),
  ]);
  return JSON.parse(stdout) as (Flow & { sent: number; echoed: number })[];
}
