import { describe, expect, it } from 'vitest';
import { WirewatchError } from '../model/errors.js';
import { admitsLateInstance, scopeEntryInstanceId, selectInstances } from './scale-set-scope.js';

const SUB = '0b7c4f7e-0000-4000-8000-00000000000a';
const web = { subscriptionId: SUB, resourceGroup: 'Fleet-RG', name: 'Web' };
const ids = ['0', '1', '2', '10'];
const instanceId = (id: string, ss = 'Web', rg = 'Fleet-RG', sub = SUB) =>
  `/subscriptions/${sub}/resourceGroups/${rg}/providers/Microsoft.Compute/virtualMachineScaleSets/${ss}/virtualMachines/${id}`;

function refusal(fn: () => unknown): { code: string; target: string | undefined } {
  try {
    fn();
  } catch (err) {
    if (err instanceof WirewatchError) return { code: err.code, target: err.target };
    throw err;
  }
  throw new Error('not refused');
}

describe('scopeEntryInstanceId', () => {
  it('reads an instance id, or an instance resource id of this scale set in any case', () => {
    expect(scopeEntryInstanceId('10', web)).toBe('10');
    expect(scopeEntryInstanceId(instanceId('2'), web)).toBe('2');
    expect(scopeEntryInstanceId(instanceId('2', 'WEB', 'fleet-rg', SUB.toUpperCase()), web)).toBe(
      '2',
    );
    expect(scopeEntryInstanceId(instanceId('2').toLowerCase() + '/', web)).toBe('2');
  });

  it('names nothing for other scale sets, groups or subscriptions, and for non-canonical ids', () => {
    for (const entry of [
      instanceId('2', 'api'),
      instanceId('2', 'Web', 'Other-RG'),
      instanceId('2', 'Web', 'Fleet-RG', '0b7c4f7e-0000-4000-8000-00000000000b'),
      instanceId('02'),
      '01',
      '-1',
      'Web_2',
      '',
      ' 2',
    ]) {
      expect(scopeEntryInstanceId(entry, web), entry).toBeUndefined();
    }
  });
});

describe('selectInstances', () => {
  it('selects every instance with an empty scope, by instance id as a number', () => {
    expect(selectInstances({ include: [], exclude: [] }, ['10', '2', '0', '1'], web)).toEqual(ids);
  });

  it('selects the included ones (once each), less the excluded ones', () => {
    expect(
      selectInstances({ include: ['10', instanceId('1'), '1'], exclude: [] }, ids, web),
    ).toEqual(['1', '10']);
    expect(selectInstances({ include: [], exclude: [instanceId('0'), '10'] }, ids, web)).toEqual([
      '1',
      '2',
    ]);
  });

  it('refuses an entry that names no instance of the set, naming the entry', () => {
    expect(refusal(() => selectInstances({ include: ['0', '7'], exclude: [] }, ids, web))).toEqual({
      code: 'InvalidScope',
      target: 'properties.scope.include[1]',
    });
    expect(
      refusal(() => selectInstances({ include: [], exclude: [instanceId('1', 'api')] }, ids, web)),
    ).toEqual({ code: 'InvalidScope', target: 'properties.scope.exclude[0]' });
  });

  it('refuses an instance both included and excluded, naming the exclude entry', () => {
    expect(
      refusal(() =>
        selectInstances({ include: ['0', '1'], exclude: ['2', instanceId('1')] }, ids, web),
      ),
    ).toEqual({ code: 'InvalidScope', target: 'properties.scope.exclude[1]' });
  });

  it('refuses a scope that selects no instance', () => {
    expect(
      refusal(() => selectInstances({ include: [], exclude: ['0', '1', '2', '10'] }, ids, web)),
    ).toEqual({ code: 'InvalidScope', target: 'properties.scope' });
  });
});

describe('admitsLateInstance', () => {
  it('admits a newcomer with an empty or exclude-only scope unless it is excluded', () => {
    expect(admitsLateInstance({ include: [], exclude: [] }, '3', web)).toBe(true);
    expect(admitsLateInstance({ include: [], exclude: ['0'] }, '3', web)).toBe(true);
    expect(admitsLateInstance({ include: [], exclude: [instanceId('3')] }, '3', web)).toBe(false);
  });

  it('never admits one with an explicit include, even an included id', () => {
    expect(admitsLateInstance({ include: ['0'], exclude: [] }, '3', web)).toBe(false);
    expect(admitsLateInstance({ include: ['3'], exclude: [] }, '3', web)).toBe(false);
  });
});
