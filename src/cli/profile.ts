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

/** Saves a profile (mode 0600; the file holds a token) and makes it the current one. */
export async function saveProfile(name: string, profile: Profile): Promise<string> {
  const config = await readConfig();
  config.profiles[name] = profile;
  config.current = name;
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

/** Where to send requests and with what: the profile, then WIREWATCH_SERVER/TOKEN/CA override. */
export interface Connection {
  readonly server: string;
  readonly token: string;
  readonly ca?: string;
  readonly subscription?: string;
  readonly profileName?: string;
}

export async function resolveConnection(options: ConnectionOptions): Promise<Connection> {
  const config = await readConfig();
  const name = options.profile ?? (process.env['WIREWATCH_PROFILE'] || config.current);
  const profile = name === undefined ? undefined : config.profiles[name];
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
  return {
    server: server.replace(/\/+$/, ''),
    token,
    ...(ca ? { ca } : {}),
    ...(subscription ? { subscription } : {}),
    ...(name && profile ? { profileName: name } : {}),
  };
}
