/**
 * The interface a capture defaults to: the default route's, for `wirewatch agent` and
 * `wirewatch up` when no `--interface` is given.
 */
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

/**
 * The interface of the default route: from /proc/net/route in this namespace, or
 * `ip -n NAME route show default` inside another one.
 */
export async function defaultRouteInterface(netns?: string): Promise<string> {
  let found: string | undefined;
  if (netns === undefined) {
    found = parseProcNetRoute(await readFile('/proc/net/route', 'utf8').catch(() => ''));
  } else {
    try {
      const { stdout } = await execFileAsync(
        'ip',
        ['-n', netns, '-j', 'route', 'show', 'default'],
        {
          timeout: 10_000,
        },
      );
      const routes = JSON.parse(stdout || '[]') as { dev?: unknown; metric?: unknown }[];
      const sorted = routes
        .filter((r): r is { dev: string; metric?: unknown } => typeof r.dev === 'string')
        .sort((x, y) => Number(x.metric ?? 0) - Number(y.metric ?? 0));
      found = sorted[0]?.dev;
    } catch (err) {
      const stderr = (err as { stderr?: unknown }).stderr;
      const why =
        typeof stderr === 'string' && stderr.trim() !== ''
          ? stderr.trim()
          : err instanceof Error
            ? err.message
            : String(err);
      throw new Error(`cannot read the routes of network namespace ${netns}: ${why}`, {
        cause: err,
      });
    }
  }
  if (found === undefined) {
    throw new Error(
      `no default route${netns === undefined ? '' : ` in network namespace ${netns}`}: pass --interface`,
    );
  }
  return found;
}

/** The interface of the lowest-metric default route that is up, from /proc/net/route. */
export function parseProcNetRoute(text: string): string | undefined {
  const RTF_UP = 0x1;
  let best: { iface: string; metric: number } | undefined;
  for (const line of text.split('\n').slice(1)) {
    const [iface, destination, , flags, , , metric, mask] = line.trim().split(/\s+/);
    if (iface === undefined || destination !== '00000000' || mask !== '00000000') continue;
    if ((parseInt(flags ?? '0', 16) & RTF_UP) === 0) continue;
    const m = Number(metric ?? 0);
    if (best === undefined || m < best.metric) best = { iface, metric: m };
  }
  return best?.iface;
}
