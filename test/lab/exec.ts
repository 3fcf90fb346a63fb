import { spawn } from 'node:child_process';

export interface RunResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a program with an argument array (never a shell) and collects its output. */
export function run(
  file: string,
  args: readonly string[],
  options: {
    input?: string;
    check?: boolean;
    timeoutMs?: number;
    /** Variables added to (or replacing) this process's environment. */
    env?: Record<string, string>;
  } = {},
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, {
      stdio: ['pipe', 'pipe', 'pipe'],
      ...(options.env === undefined ? {} : { env: { ...process.env, ...options.env } }),
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 60_000);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const result = { code, signal, stdout, stderr };
      if ((options.check ?? true) && code !== 0) {
        reject(
          new Error(`${file} ${args.join(' ')} exited ${code ?? signal}: ${stderr.slice(-2000)}`),
        );
      } else {
        resolve(result);
      }
    });
    // A child that never reads its stdin must not make us crash with EPIPE.
    child.stdin.on('error', () => undefined);
    child.stdin.end(options.input ?? '');
  });
}

export const isRoot = process.getuid?.() === 0;

/** Runs every cleanup step in order, each one even if an earlier one failed (for afterAll). */
export async function runEveryStep(steps: readonly (() => unknown)[]): Promise<void> {
  for (const step of steps) {
    try {
      await step();
    } catch {
      // The next step runs all the same.
    }
  }
}
