import { Command } from 'commander';
import { apiCommand, withClient } from './cli-context.js';
import { printResult, type Column } from './output.js';
import { listValue, onServer, parseCount, resolveSubscription, segment } from './resource-scope.js';

/** One entry of the audit log (docs/api.md "Native API"). */
interface AuditEntry {
  readonly id: string;
  readonly time: string;
  readonly actor: string;
  readonly action: string;
  readonly resourceId: string;
  readonly sourceIp: string | null;
  readonly detail: unknown;
}

const COLUMNS: readonly Column<AuditEntry>[] = [
  { header: 'Time', get: (e) => e.time, kind: 'time' },
  { header: 'Actor', get: (e) => e.actor },
  { header: 'Action', get: (e) => e.action },
  { header: 'Resource', get: (e) => e.resourceId, kind: 'id' },
  { header: 'Source', get: (e) => e.sourceIp },
];

/** `wirewatch audit`: who did what, when, from where. */
export function auditCommand(): Command {
  return new Command('audit')
    .description('the audit log of a subscription (Owner)')
    .addCommand(auditListCommand())
    .addHelpText('after', '\nExample:\n  wirewatch audit list --top 20 -o table\n');
}

function auditListCommand(): Command {
  return apiCommand('list')
    .description('list audit entries, newest first')
    .option('--top <n>', 'entries per page, 1-1000 (default: the server’s, 100)')
    .option('--all', 'follow nextLink: every entry, not only the first page')
    .addHelpText(
      'after',
      `
Without --all only the first page is printed, and a note on stderr says that more exist.
json is the entries array (with --all, of every page).

Table columns: Time, Actor, Action, Resource, Source.

Examples:
  wirewatch audit list --top 20 -o table
  wirewatch audit list --all -o tsv | awk -F'\\t' '$3 == "capture.delete"'
`,
    )
    .action((o: { top?: string; all?: boolean }, command: Command) =>
      withClient(command, async ({ client, output }) => {
        const top = o.top === undefined ? undefined : parseCount(o.top, '--top', 1, 1000);
        const subscription = segment(await resolveSubscription(client), '--subscription');
        let path = `/api/v1/subscriptions/${subscription}/audit`;
        let query: Record<string, string | number | undefined> = { $top: top };
        const entries: AuditEntry[] = [];
        for (;;) {
          const page = await client.get<{ value?: AuditEntry[]; nextLink?: string }>(path, query);
          entries.push(...listValue<AuditEntry>(page));
          if (!page.nextLink) break;
          if (!o.all) {
            process.stderr.write(
              'wirewatch: more entries exist: pass --all for every one, or a larger --top\n',
            );
            break;
          }
          ({ path, query } = onServer(page.nextLink));
        }
        printResult(output, entries, COLUMNS);
      }),
    );
}
