/**
 * `wirewatch configure --defaults location=L group=RG`: the defaults of -l/--location and
 * -g/--resource-group, kept in the profile as az keeps them (`az configure --defaults`).
 * WIREWATCH_LOCATION and WIREWATCH_RESOURCE_GROUP override a profile's defaults.
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import { printResult, OUTPUT_FORMATS, type OutputFormat } from './output.js';
import {
  DEFAULT_KEYS,
  readDefaults,
  saveDefaults,
  type DefaultKey,
  type Defaults,
} from './profile.js';

interface ConfigureOptions {
  readonly defaults?: Defaults;
  readonly listDefaults?: boolean;
  readonly profile?: string;
  readonly output: OutputFormat;
}

/** One default as `--list-defaults` shows it: az's name, its value and where it comes from. */
interface DefaultView {
  readonly name: DefaultKey;
  readonly value: string;
  readonly source: string;
}

const ENV: Record<DefaultKey, string> = {
  location: 'WIREWATCH_LOCATION',
  group: 'WIREWATCH_RESOURCE_GROUP',
};

/** Commander parser for `--defaults`: `key=value` words (an empty value clears the default). */
function defaultsWords(word: string, previous: Defaults | undefined): Defaults {
  const eq = word.indexOf('=');
  const key = eq < 0 ? word : word.slice(0, eq);
  if (eq < 0 || !Object.hasOwn(DEFAULT_KEYS, key)) {
    throw new InvalidArgumentError(
      `${JSON.stringify(word)}: expected location=VALUE or group=VALUE (an empty VALUE clears it)`,
    );
  }
  const value = word.slice(eq + 1).trim();
  return { ...previous, [DEFAULT_KEYS[key as DefaultKey]]: value === '' ? undefined : value };
}

export function configureCommand(): Command {
  return new Command('configure')
    .description(
      'set or show the defaults of -l/--location and -g/--resource-group (as az configure)',
    )
    .option(
      '--defaults <key=value...>',
      'location=L, group=RG; an empty value clears',
      defaultsWords,
    )
    .option(
      '--list-defaults',
      'show the defaults in effect and where each comes from (also the default)',
    )
    .option('--profile <name>', 'the profile to keep them in (default: the current one)')
    .addOption(
      new Option('-o, --output <format>', 'output format').choices(OUTPUT_FORMATS).default('json'),
    )
    .addHelpText(
      'after',
      `
The defaults apply to every command that takes -l or -g (a list's -g filter excepted). Without a
location default, commands on existing captures use the subscription's only location.
WIREWATCH_LOCATION and WIREWATCH_RESOURCE_GROUP override the profile's defaults.

Table columns: Name, Value, Source.

Examples:
  wirewatch configure --defaults location=westeurope group=web
  wirewatch configure --defaults group=
  wirewatch configure --list-defaults -o table
`,
    )
    .action(async (o: ConfigureOptions) => {
      const profileOption = o.profile === undefined ? {} : { profile: o.profile };
      const saved =
        o.defaults === undefined
          ? await readDefaults(profileOption)
          : await saveDefaults(profileOption, o.defaults);
      const views: DefaultView[] = [];
      for (const name of Object.keys(DEFAULT_KEYS) as DefaultKey[]) {
        const env = process.env[ENV[name]];
        const fromProfile = saved.defaults[DEFAULT_KEYS[name]];
        if (env) views.push({ name, value: env, source: ENV[name] });
        else if (fromProfile) {
          views.push({ name, value: fromProfile, source: `profile ${saved.profile}` });
        }
      }
      printResult(o.output, views, [
        { header: 'Name', get: (d: DefaultView) => d.name },
        { header: 'Value', get: (d) => d.value },
        { header: 'Source', get: (d) => d.source },
      ]);
    });
}
