import { describe, expect, it } from 'vitest';
import {
  createProperties,
  refusalInCreateWords,
  startFailureInCreateWords,
  targetChoice,
  type CreateOptions,
} from './capture-create-body.js';
import { RefusedError, UsageError } from './cli-errors.js';

const SS =
  '/subscriptions/s/resourceGroups/lab/providers/Microsoft.Compute/virtualMachineScaleSets/web';
const VM = '/subscriptions/s/resourceGroups/lab/providers/Microsoft.Compute/virtualMachines/a';

const opts = (o: Partial<CreateOptions>): CreateOptions => ({ name: 'pc1', ...o });

/** The message of the refusal `err` becomes, said in the words of `o`. */
function inWords(o: CreateOptions, target: string, message: string): string {
  const choice = targetChoice(o);
  const properties = createProperties(o, choice, SS, undefined);
  const said = refusalInCreateWords(
    new RefusedError(400, 'InvalidScope', `${target}: ${message}`, target),
    o,
    choice,
    properties,
  );
  if (!(said instanceof RefusedError)) throw new Error('not a refusal');
  return said.message;
}

describe('targetChoice', () => {
  it('takes az --vm and --target (a VM unless --target-type says a scale set) and --vmss', () => {
    expect(targetChoice(opts({ vm: 'a' }))).toEqual({
      type: 'AzureVM',
      nameOrId: 'a',
      option: '--vm',
    });
    expect(targetChoice(opts({ vm: 'web', targetType: 'AzureVMSS' }))).toEqual({
      type: 'AzureVMSS',
      nameOrId: 'web',
      option: '--vm',
    });
    expect(targetChoice(opts({ target: SS, targetType: 'AzureVMSS' }))).toEqual({
      type: 'AzureVMSS',
      nameOrId: SS,
      option: '--target',
    });
    expect(targetChoice(opts({ target: VM }))).toMatchObject({ type: 'AzureVM' });
    expect(targetChoice(opts({ vmss: 'web' }))).toEqual({
      type: 'AzureVMSS',
      nameOrId: 'web',
      option: '--vmss',
    });
    expect(targetChoice(opts({ vmss: 'web', targetType: 'AzureVMSS' }))).toMatchObject({
      type: 'AzureVMSS',
    });
  });

  it.each([
    ['no target', {}, /--vm VM, --vmss SCALE_SET, or --target/],
    ['two targets', { vm: 'a', vmss: 'web' }, /not --vm and --vmss/],
    ['three targets', { vm: 'a', target: 'b', vmss: 'c' }, /not --vm and --target and --vmss/],
    ['--vmss said to be a VM', { vmss: 'web', targetType: 'AzureVM' as const }, /--vmss/],
  ])('%s is a usage error naming the options', (_name, o, message) => {
    const run = () => targetChoice(opts(o));
    expect(run).toThrow(UsageError);
    expect(run).toThrow(message);
  });
});

describe('createProperties', () => {
  it('a scale set by --vmss: its id, targetType AzureVMSS, the scope as typed', () => {
    const o = opts({ vmss: 'web', include: ['0', '2'], filePath: '/c/x.cap', timeLimit: 30 });
    expect(createProperties(o, targetChoice(o), SS, undefined)).toEqual({
      target: SS,
      targetType: 'AzureVMSS',
      scope: { include: ['0', '2'] },
      timeLimitInSeconds: 30,
      storageLocation: { filePath: '/c/x.cap' },
    });
  });

  it("az's --vm with --target-type and --exclude; a storage account and a ring", () => {
    const o = opts({
      vm: 'web',
      targetType: 'AzureVMSS',
      exclude: ['1'],
      storageAccount: 'logs',
      continuousCapture: true,
      fileCount: 3,
      filePath: '/c/ring.cap',
    });
    expect(createProperties(o, targetChoice(o), SS, '/sa/logs')).toEqual({
      target: SS,
      targetType: 'AzureVMSS',
      scope: { exclude: ['1'] },
      storageLocation: { storageId: '/sa/logs', localPath: '/c/ring.cap' },
      continuousCapture: true,
      captureSettings: { fileCount: 3 },
    });
  });

  it('a VM by --vm sends no targetType and no scope, as before', () => {
    const o = opts({ vm: 'a', filePath: '/c/a.cap', includeOwnTraffic: true });
    expect(createProperties(o, targetChoice(o), VM, undefined)).toEqual({
      target: VM,
      storageLocation: { filePath: '/c/a.cap' },
      includeOwnTraffic: true,
    });
  });

  it('include and exclude both typed are both sent: the server says what overlaps', () => {
    const o = opts({ vmss: 'web', include: ['0'], exclude: ['0'], filePath: '/c/x.cap' });
    expect(createProperties(o, targetChoice(o), SS, undefined).scope).toEqual({
      include: ['0'],
      exclude: ['0'],
    });
  });
});

describe('refusals in the words typed', () => {
  it('names the target option the user typed', () => {
    const message = 'scale set "web" has no instance';
    expect(inWords(opts({ vmss: 'web' }), 'properties.target', message)).toBe(`--vmss: ${message}`);
    expect(
      inWords(opts({ target: 'web', targetType: 'AzureVMSS' }), 'properties.target', message),
    ).toBe(`--target: ${message}`);
    expect(inWords(opts({ vm: 'a' }), 'properties.targetType', 'bad')).toBe('--target-type: bad');
    expect(inWords(opts({ vmss: 'web' }), 'properties.targetType', 'bad')).toBe('--vmss: bad');
  });

  it('names a scope entry by the value typed, and the scope as both options', () => {
    const o = opts({ vmss: 'web', include: ['0', '7'], exclude: ['my vm'] });
    expect(inWords(o, 'properties.scope.include[1]', 'names no instance of web')).toBe(
      '--include 7: names no instance of web',
    );
    expect(inWords(o, 'properties.scope.exclude[0]', 'names no instance of web')).toBe(
      '--exclude "my vm": names no instance of web',
    );
    expect(inWords(o, 'properties.scope', 'instance 0 is both included and excluded')).toBe(
      '--include/--exclude: instance 0 is both included and excluded',
    );
  });

  it("an agent's file error names --file-path", () => {
    const o = opts({ vmss: 'web', filePath: '/c/x.cap' });
    const choice = targetChoice(o);
    const said = startFailureInCreateWords(
      new RefusedError(500, 'CaptureFileExists', 'filePath: /c/x.cap exists'),
      o,
      choice,
      createProperties(o, choice, SS, undefined),
    );
    expect(said).toMatchObject({
      code: 'CaptureFileExists',
      message: '--file-path: /c/x.cap exists',
    });
  });
});
