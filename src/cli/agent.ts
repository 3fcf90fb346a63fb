import { readFile } from 'node:fs/promises';
import { Command, InvalidArgumentError, Option } from 'commander';
import type { Agent } from '../agent/agent.js';
import { createJsonLineLog, type AgentLogLevel } from '../agent/agent-log.js';
import { DEFAULT_CAPTURE_ROOT } from '../capture/capture-path.js';
import { defaultRouteInterface } from '../capture/default-route.js';
import type { PortRange } from '../capture/filter-spec.js';
import { isValidNetnsName } from '../capture/interface-addresses.js';
import { UsageError } from './cli-errors.js';

export const DEFAULT_AGENT_DATA_DIR = '/var/lib/wirewatch/agent';

interface AgentCommandOptions {
  server: string;
  ca?: string;
  enrollToken?: string;
  subscription: string;
  resourceGroup: string;
  name?: string;
  scaleSet?: string;
  instanceId?: string;
  location: string;
  interface?: string;
  netns?: string;
  dataDir: string;
  captureRoot: string;
  ownPorts?: PortRange;
  logLevel: AgentLogLevel;
}

/** `--own-ports FIRST-LAST`: at least 2 and at most 1024 ports, above 1023. */
function ownPortsRange(value: string): PortRange {
  const m = /^(\d{1,5})-(\d{1,5})$/.exec(value);
  const first = Number(m?.[1]);
  const last = Number(m?.[2]);
  if (!m || first < 1024 || last > 65535 || last - first < 1 || last - first > 1023) {
    throw new InvalidArgumentError(
      'expected FIRST-LAST, 2 to 1024 ports between 1024 and 65535 (e.g. 61000-61015)',
    );
  }
  return { first, last };
}

/** A host is a VM (--name) or an instance of a scale set (--scale-set [--instance-id]). */
function checkHostOptions(opts: AgentCommandOptions): void {
  if ((opts.name === undefined) === (opts.scaleSet === undefined)) {
    throw new UsageError(
      'give either --name (the VM this host is) or --scale-set (the scale set it is an instance of)',
    );
  }
  if (opts.instanceId !== undefined && opts.scaleSet === undefined) {
    throw new UsageError('--instance-id goes with --scale-set');
  }
}

/** `wirewatch agent`: the host daemon that runs the captures the server assigns. */
export function agentCommand(): Command {
  return new Command('agent')
    .description('run the agent: enroll with the server once, then run the captures it assigns')
    .requiredOption('--server <url>', 'the wirewatch server, https://host:port')
    .option('--ca <file>', 'CA certificate (PEM) to trust for the server')
    .addOption(
      new Option(
        '--enroll-token <token>',
        'the subscription enrollment token; needed only for the first start',
      ).env('WIREWATCH_ENROLL_TOKEN'),
    )
    .requiredOption('--subscription <id>', 'subscription id (uuid) this VM belongs to')
    .requiredOption('--resource-group <name>', 'resource group of the VM')
    .option('--name <vm>', 'the VM name this host appears as (or --scale-set)')
    .option(
      '--scale-set <name>',
      'enroll as an instance of this scale set (in --resource-group and --location), instead of --name',
    )
    .option(
      '--instance-id <id>',
      'with --scale-set: the instance id (digits); default: the next free one, kept in --data-dir',
    )
    .requiredOption('--location <region>', 'the VM location (region), e.g. westeurope')
    .option('--interface <name>', 'interface to capture on (default: the default route)')
    .option('--netns <name>', 'network namespace the interface lives in')
    .addOption(
      new Option('--data-dir <dir>', 'agent.json and the session journal').default(
        DEFAULT_AGENT_DATA_DIR,
      ),
    )
    .addOption(
      new Option('--capture-root <dir>', 'folder every capture file must lie under').default(
        DEFAULT_CAPTURE_ROOT,
      ),
    )
    .option(
      '--own-ports <first-last>',
      "local ports the agent's connections use, left out of captures (default: 16 ports above the ephemeral range)",
      ownPortsRange,
    )
    .addOption(
      new Option('--log-level <level>', 'least important log level written')
        .choices(['debug', 'info', 'warn', 'error'])
        .default('info'),
    )
    .addHelpText(
      'after',
      `
Logs are JSON lines on stderr. SIGTERM or Ctrl-C stops every capture cleanly and exits 0.

Example (first start; later starts need no token):
  wirewatch agent --server https://wirewatch.example:8443 --ca /etc/wirewatch/ca.pem \\
    --enroll-token "$TOKEN" --subscription 00000000-0000-0000-0000-000000000001 \\
    --resource-group web --name web-01 --location westeurope

As an instance of a scale set (the server assigns instance ids 0, 1, …; a restart keeps it):
  wirewatch agent --server https://wirewatch.example:8443 --enroll-token "$TOKEN" \\
    --subscription 00000000-0000-0000-0000-000000000001 --resource-group web \\
    --scale-set web --location westeurope`,
    )
    .action(async (opts: AgentCommandOptions) => {
      checkHostOptions(opts);
      const log = createJsonLineLog((line) => process.stderr.write(line), {
        minLevel: opts.logLevel,
      });
      if (opts.netns !== undefined && !isValidNetnsName(opts.netns)) {
        throw new Error(`--netns: "${opts.netns}" is not a network namespace name`);
      }
      const iface = opts.interface ?? (await defaultRouteInterface(opts.netns));
      const ca = opts.ca === undefined ? undefined : await readFile(opts.ca);

      const controller = new AbortController();
      let agent: Agent | undefined;
      let closing: Promise<void> | undefined;
      // Every signal is caught: a second one must not kill the agent while it finishes files.
      const onSignal = (signal: NodeJS.Signals) => {
        if (controller.signal.aborted) {
          log('warn', 'still stopping: finishing the capture files', { signal });
          return;
        }
        log('info', 'stopping', { signal });
        controller.abort();
        closing = agent?.close();
      };
      process.on('SIGINT', onSignal);
      process.on('SIGTERM', onSignal);
      try {
        try {
          // Loaded here so that other commands do not load the agent's modules.
          const { createAgent } = await import('../agent/agent.js');
          agent = await createAgent({
            serverUrl: opts.server,
            ...(ca === undefined ? {} : { ca }),
            ...(opts.enrollToken === undefined ? {} : { enrollToken: opts.enrollToken }),
            subscriptionId: opts.subscription,
            resourceGroup: opts.resourceGroup,
            ...(opts.name === undefined ? {} : { name: opts.name }),
            ...(opts.scaleSet === undefined ? {} : { scaleSet: opts.scaleSet }),
            ...(opts.instanceId === undefined ? {} : { instanceId: opts.instanceId }),
            location: opts.location,
            interface: iface,
            ...(opts.netns === undefined ? {} : { netns: opts.netns }),
            dataDir: opts.dataDir,
            captureRoot: opts.captureRoot,
            ...(opts.ownPorts === undefined ? {} : { ownPorts: opts.ownPorts }),
            log,
            signal: controller.signal,
          });
        } catch (err) {
          // A signal during enrollment is an ordinary stop.
          if (controller.signal.aborted) return;
          throw err;
        }
        if (controller.signal.aborted) closing = agent.close();
        const exit = await agent.exited;
        await closing;
        if (exit.reason === 'unauthorized') throw exit.error;
      } finally {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
        // Everything is closed; if some handle still held the process, it must not keep a
        // stopped agent around (timer unref'd: it fires only if something else is alive).
        setTimeout(() => process.exit(), 5000).unref();
      }
    });
}
