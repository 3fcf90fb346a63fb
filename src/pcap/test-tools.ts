/**
 * Test helpers for src/pcap: temp dirs, and the real tcpdump and tshark as references. Not part
 * of the build (tsconfig.build.json leaves out src/**\/test-*.ts).
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createPcapParser } from './reader.js';
import { readFile } from 'node:fs/promises';

export const TSHARK = '/usr/bin/tshark';
export const TCPDUMP = '/usr/bin/tcpdump';

/** True when this process may capture packets (tcpdump on lo and any needs root). */
export const isRoot = process.getuid?.() === 0;

/** A fresh temp dir; remove it with {@link removeTempDir}. */
export function makeTempDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'wirewatch-pcap-test-'));
}

export async function removeTempDir(dir: string | undefined): Promise<void> {
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
}

export interface ToolResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a program with an argument array (never a shell) and collects its output. */
export function runTool(command: string, args: readonly string[]): Promise<ToolResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

/**
 * Reads a file with tshark and returns one row per frame with the given fields (first
 * occurrence of each). Rejects if tshark fails or complains about the file.
 */
export async function tsharkFields(file: string, fields: readonly string[]): Promise<string[][]> {
  const args = ['-r', file, '-n', '-T', 'fields', '-E', 'occurrence=f', '-E', 'separator=\t'];
  for (const field of fields) args.push('-e', field);
  const result = await runTool(TSHARK, args);
  // tshark always warns about running as root; anything else on stderr is a real complaint.
  const complaints = result.stderr
    .split('\n')
    .filter((line) => line.trim() !== '' && !line.includes('Running as user "root"'));
  if (result.code !== 0 || complaints.length > 0) {
    throw new Error(`tshark failed on ${file} (exit ${result.code}): ${complaints.join('\n')}`);
  }
  return result.stdout
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => line.split('\t'));
}

export interface TcpdumpCapture {
  /** Waits until the file holds `count` records (or `timeoutMs` passes), then stops tcpdump. */
  stop(count: number, timeoutMs?: number): Promise<ToolResult>;
  /** Kills tcpdump if it is still running. Safe to call more than once. */
  kill(): void;
}

/**
 * Starts tcpdump writing to `file` and resolves once it is listening. Packet-buffered (-U) so
 * the file can be watched while it grows.
 */
export async function startTcpdump(
  iface: string,
  file: string,
  filter: string,
  extraArgs: readonly string[] = [],
): Promise<TcpdumpCapture> {
  const child: ChildProcess = spawn(
    TCPDUMP,
    ['-i', iface, '-n', '-U', '-w', file, ...extraArgs, filter],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  const exited = new Promise<ToolResult>((resolve) => {
    child.on('close', (code, signal) => resolve({ code, signal, stdout: '', stderr }));
  });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`tcpdump did not start: ${stderr}`)), 10_000);
    child.stderr?.setEncoding('utf8').on('data', (s: string) => {
      stderr += s;
      if (stderr.includes('listening on')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    void exited.then((r) => {
      clearTimeout(timer);
      reject(new Error(`tcpdump exited early (${r.code}): ${r.stderr}`));
    });
  });

  const kill = (): void => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
  return {
    kill,
    async stop(count, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline && (await countRecords(file)) < count) {
        await new Promise((r) => setTimeout(r, 50));
      }
      child.kill('SIGINT');
      return exited;
    },
  };
}

async function countRecords(file: string): Promise<number> {
  try {
    const parser = createPcapParser();
    return parser.push(await readFile(file)).length;
  } catch {
    return 0;
  }
}
