import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import path from 'node:path';
import { UsageError } from './cli-errors.js';

/** One saved connection: `wirewatch login` writes it, every API command reads it. */
export interface Profile {
  readonly server: string;
  readonly token: string;
  /** A CA certificate file (PEM) to trust for the server. */
  readonly ca?: string;
  /** The subscription commands use when --subscription is not given. */
  readonly subscription?: string;
  /** The location commands use when -l/--location is not given (`wirewatch configure`). */
  readonly location?: string;
  /** The resource group commands use when -g/--resource-group is not given. */
  readonly resourceGroup?: string;
}

/** The settings `wirewatch configure --defaults` writes, by az's names for them. */
export const DEFAULT_KEYS = { location: 'location', group: 'resourceGroup' } as const;
export type DefaultKey = keyof typeof DEFAULT_KEYS;
/** A profile's defaults; a key given as undefined clears that default. */
export interface Defaults {
  readonly location?: string | undefined;
  readonly resourceGroup?: string | undefined;
}

interface ConfigFile {
  current?: string;
  profiles: Record<string, Profile>;
}

/** ~/.config/wirewatch (or $XDG_CONFIG_HOME/wirewatch), mode 0700; config.json inside, 0600. */
export function configDir(): string {
  const base = process.env['XDG_CONFIG_HOME'] || path.join(homedir(), '.config');
  return path.join(base, 'wirewatch');
}

function configPath(): string {
  return path.join(configDir(), 'config.json');
}

async function readConfig(): Promise<ConfigFile> {
  let text: string;
  try {
    text = await readFile(configPath(), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { profiles: {} };
    throw err;
  }
  try {
    const parsed = JSON.parse(text) as ConfigFile;
    return { ...parsed, profiles: parsed.profiles ?? {} };
  } catch {
    throw new UsageError(`${configPath()} is not valid JSON; fix or delete it and log in again`);
  }
}

/**
 * Saves a profile (mode 0600; the file holds a token) and makes it the current one. Defaults
 * the new profile does not set are kept from the one it replaces (a new token keeps them).
 */
export async function saveProfile(name: string, profile: Profile): Promise<string> {
  const config = await readConfig();
  config.profiles[name] = { ...defaultsOf(config.profiles[name]), ...profile };
  config.current = name;
  return writeConfig(config);
}

/**
 * Sets (a value) or clears (undefined) the defaults of a profile: `options.profile`,
 * WIREWATCH_PROFILE or the current one. Answers the profile's name and its defaults after.
 */
export async function saveDefaults(
  options: { readonly profile?: string },
  changes: Defaults,
): Promise<{ profile: string; defaults: Defaults }> {
  const config = await readConfig();
  const { name, profile } = chosenProfile(config, options.profile);
  if (name === undefined || profile === undefined) {
    throw new UsageError(
      name === undefined
        ? 'no profile to keep defaults in: run `wirewatch login` first'
        : `profile ${name}: no such profile; run wirewatch login first`,
    );
  }
  const { location: _location, resourceGroup: _resourceGroup, ...connection } = profile;
  config.profiles[name] = { ...connection, ...defaultsOf({ ...profile, ...changes }) };
  await writeConfig(config);
  return { profile: name, defaults: defaultsOf(config.profiles[name]) };
}

/** The defaults a profile holds. */
export function defaultsOf(profile: Defaults | undefined): {
  location?: string;
  resourceGroup?: string;
} {
  return {
    ...(profile?.location ? { location: profile.location } : {}),
    ...(profile?.resourceGroup ? { resourceGroup: profile.resourceGroup } : {}),
  };
}

/** The profile commands use: --profile, then WIREWATCH_PROFILE, then the current one. */
function chosenProfile(
  config: ConfigFile,
  option: string | undefined,
): { name?: string; profile?: Profile } {
  const name = option ?? (process.env['WIREWATCH_PROFILE'] || config.current);
  return name === undefined ? {} : { name, profile: config.profiles[name] };
}

/** Reads the defaults of the profile commands use (`wirewatch configure --list-defaults`). */
export async function readDefaults(options: {
  readonly profile?: string;
}): Promise<{ profile?: string; defaults: Defaults }> {
  const { name, profile } = chosenProfile(await readConfig(), options.profile);
  if (options.profile !== undefined && !profile) {
    throw new UsageError(
      `--profile ${options.profile}: no such profile; run wirewatch login first`,
    );
  }
  return { ...(profile && name ? { profile: name } : {}), defaults: defaultsOf(profile) };
}

async function writeConfig(config: ConfigFile): Promise<string> {
  await mkdir(configDir(), { recursive: true, mode: 0o700 });
  const file = configPath();
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, `${JSON.stringify(config, null, 2)}\n`, { mode: 0o600 });
  await chmod(tmp, 0o600);
  await rename(tmp, file);
  return file;
}

export interface ConnectionOptions {
  readonly profile?: string;
  readonly subscription?: string;
}

/**
 * Where to send requests and with what: the profile, then WIREWATCH_SERVER/TOKEN/CA override;
 * the defaults for -l and -g from WIREWATCH_LOCATION/RESOURCE_GROUP, then the profile.
 */
export interface Connection {
  readonly server: string;
  readonly token: string;
  readonly ca?: string;
  readonly subscription?: string;
  readonly profileName?: string;
  readonly location?: string;
  readonly resourceGroup?: string;
}

export async function resolveConnection(options: ConnectionOptions): Promise<Connection> {
  const { name, profile } = chosenProfile(await readConfig(), options.profile);
  if (options.profile !== undefined && !profile) {
    throw new UsageError(
      `--profile ${options.profile}: no such profile; run wirewatch login first`,
    );
  }
  const server = process.env['WIREWATCH_SERVER'] || profile?.server;
  const token = process.env['WIREWATCH_TOKEN'] || profile?.token;
  const ca = process.env['WIREWATCH_CA'] || profile?.ca;
  if (!server || !token) {
    throw new UsageError(
      'not logged in: run `wirewatch login --server URL --token TOKEN`, or set WIREWATCH_SERVER and WIREWATCH_TOKEN',
    );
  }
  const subscription =
    options.subscription ?? process.env['WIREWATCH_SUBSCRIPTION'] ?? profile?.subscription;
  const location = process.env['WIREWATCH_LOCATION'] || profile?.location;
  const resourceGroup = process.env['WIREWATCH_RESOURCE_GROUP'] || profile?.resourceGroup;
  return {
    server: server.replace(/\/+$/, ''),
    token,
    ...(ca ? { ca } : {}),
    ...(subscription ? { subscription } : {}),
    ...(name && profile ? { profileName: name } : {}),
    ...(location ? { location } : {}),
    ...(resourceGroup ? { resourceGroup } : {}),
  };
}
