import path from 'node:path';
import { Command, Option } from 'commander';
import { createJsonLineLog, type AgentLogLevel } from '../agent/agent-log.js';
import { findExecutable } from '../capture/tcpdump.js';
import type { Up } from '../up/up.js';
import { CLI_API_VERSION } from './api-client.js';

interface UpCommandOptions {
  dataDir: string;
  listen: string;
  interface?: string;
  logLevel: AgentLogLevel;
}

/** `wirewatch up`: server, blob store, default resources and a local agent, until Ctrl-C. */
export function upCommand(): Command {
  return new Command('up')
    .description(
      'run everything on this host, on loopback: the server, an embedded Azurite blob store, a default subscription and a local agent',
    )
    .option('--data-dir <dir>', 'where everything is kept; a second run resumes', './.wirewatch')
    .option('--listen <host:port>', 'loopback address of the server', '127.0.0.1:7080')
    .option(
      '--interface <name>',
      'interface the local agent captures on (default: the default route)',
    )
    .addOption(
      new Option('--log-level <level>', 'least important log level written on stderr')
        .choices(['debug', 'info', 'warn', 'error'])
        .default('warn'),
    )
    .addHelpText(
      'after',
      `
Prints the server URL, the admin token and example commands on stdout; logs go to stderr.
Needs root (tcpdump does). Ctrl-C or SIGTERM stops everything cleanly; a second Ctrl-C forces.

Example:
  sudo wirewatch up --data-dir /var/lib/wirewatch/up --listen 127.0.0.1:7080`,
    )
    .action(async (opts: UpCommandOptions) => {
      await checkHost();
      const log = createJsonLineLog((line) => process.stderr.write(line), {
        minLevel: opts.logLevel,
      });
      const controller = new AbortController();
      let up: Up | undefined;
      let stopping: Promise<void> | undefined;
      const onSignal = (signal: NodeJS.Signals) => {
        if (controller.signal.aborted) {
          process.stderr.write(`wirewatch up: ${signal} again: stopping at once\n`);
          process.exit(130);
        }
        process.stderr.write(
          `wirewatch up: stopping (running captures are finalized; ${signal} again forces)\n`,
        );
        controller.abort();
        stopping = up?.stop();
      };
      process.on('SIGINT', onSignal);
      process.on('SIGTERM', onSignal);
      try {
        process.stderr.write('wirewatch up: starting Azurite, the server and the local agent\n');
        try {
          // Loaded here so that other commands do not load the server, agent and Azurite modules.
          const { startUp } = await import('../up/up.js');
          up = await startUp({
            dataDir: opts.dataDir,
            listen: opts.listen,
            ...(opts.interface === undefined ? {} : { interface: opts.interface }),
            log,
            serverLogger: { level: opts.logLevel, stream: process.stderr },
            ...(process.env['WIREWATCH_ADMIN_TOKEN']
              ? { adminToken: process.env['WIREWATCH_ADMIN_TOKEN'] }
              : {}),
            signal: controller.signal,
          });
        } catch (err) {
          // A signal while starting is an ordinary stop: startUp stopped what it had started.
          if (controller.signal.aborted) return;
          throw err;
        }
        if (controller.signal.aborted) {
          stopping = up.stop();
        } else {
          process.stdout.write(upSummary(up));
          await new Promise<void>((resolve) =>
            controller.signal.addEventListener('abort', () => resolve()),
          );
        }
        await stopping;
        process.stderr.write('wirewatch up: stopped\n');
      } finally {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
        // Everything is closed; a handle left open somewhere must not keep the process alive.
        setTimeout(() => process.exit(), 5000).unref();
      }
    });
}

/** Refuses to start without what captures need, naming the exact command that fixes it. */
async function checkHost(): Promise<void> {
  const root = process.getuid?.() === 0;
  const sudo = root ? '' : 'sudo ';
  if ((await findExecutable('tcpdump')) === undefined) {
    throw new Error(
      `tcpdump is not installed; run: ${sudo}apt-get update && ${sudo}apt-get install -y tcpdump`,
    );
  }
  if (!root) {
    const again = [process.execPath, ...process.argv.slice(1)].map(shellQuote).join(' ');
    throw new Error(`captures need root (tcpdump does); run: sudo ${again}`);
  }
}

/** What the user needs to start: the URL, the token, the ids, and three commands to copy. */
export function upSummary(up: Up): string {
  const nw =
    `${up.url}/subscriptions/${up.subscriptionId}/resourceGroups/${up.resourceGroup}` +
    `/providers/Microsoft.Network/networkWatchers/${up.networkWatcher}`;
  const capture = `${nw}/packetCaptures/demo`;
  const q = `?api-version=${CLI_API_VERSION}`;
  // -g: curl would read the brackets of an IPv6 address ([::1]) as a glob pattern.
  const curl = up.url.includes('[') ? 'curl -sS -g' : 'curl -sS';
  const auth = `-H ${shellQuote(`Authorization: Bearer ${up.adminToken}`)}`;
  // On lo, "everything" would include the capture's own upload to Azurite, which grows the
  // capture, which grows the upload: there the example keeps to UDP.
  const loopback = up.interface === 'lo';
  const body = JSON.stringify({
    properties: {
      target: up.vmId,
      timeLimitInSeconds: 60,
      storageLocation: {
        storageId: up.storageAccountId,
        filePath: path.join(up.captureRoot, 'demo.cap'),
      },
      ...(loopback ? { filters: [{ protocol: 'UDP' }] } : {}),
    },
  });
  return `
wirewatch is up${up.resumed ? ' (resumed)' : ''}; data in ${up.dataDir}

  portal:        ${up.url}/  (the web portal arrives later; the API is there now)
  access token:  ${up.adminToken}
                 (admin; kept in ${up.adminTokenPath})
  subscription:  ${up.subscriptionId}  (default)
  this host:     VM ${up.vmName} in resource group ${up.resourceGroup}, location ${up.location}, capturing on ${up.interface}${up.agentConnected ? '' : ' (agent not connected yet)'}
  watcher:       network watcher ${up.networkWatcher} in resource group ${up.resourceGroup}
  storage:       storage account ${up.storageAccount} = Azurite at ${up.blobEndpoint}
  local files:   ${up.captureRoot}

Try it:

# 1. create: a 60 s capture${loopback ? ' of UDP' : ''} on this host, into storage account ${up.storageAccount} and a local file
${curl} -X PUT ${shellQuote(capture + q)} ${auth} \\
  -H 'Content-Type: application/json' -d ${shellQuote(body)}

# 2. status (uploadState Completed: the capture is in blob storage)
${curl} -X POST ${shellQuote(`${capture}/queryStatus${q}`)} ${auth}

# 3. download it, once the capture has ended and uploaded
${curl} -f ${shellQuote(`${capture}/content${q}`)} ${auth} -o capture.cap && tshark -r capture.cap

Ctrl-C stops everything; wirewatch up again resumes where this run left off.
`;
}

/** A word for a POSIX shell, single-quoted unless it is plainly safe. */
function shellQuote(word: string): string {
  return /^[-\w./:=@+,]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}
