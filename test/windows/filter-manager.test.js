'use strict';
// The filter-manager calls in Windows node.exe. Under Wine with its own fltlib.dll, whose
// filter-manager functions are stubs that end the process, each call must reject with
// ERROR_PROC_NOT_FOUND named after its first fltlib function, and the process must live on. With
// the emulator's fltlib.dll they are implemented: test/filter-manager checks them there, with
// the emulated fltmgr.sys and drivers loaded. On Windows: the read-only calls against the real
// filter manager (unverified until the Windows workflow runs them; they need an elevated runner).
const assert = require('node:assert/strict');
const fltport = require('fltport');
const { describeRuntime } = require('./helpers');

const runtime = describeRuntime();
const ERROR_PROC_NOT_FOUND = 0x8007007f;

// Each call with the fltlib function it makes first.
const calls = [
  ['listFilters()', () => fltport.listFilters(), 'FilterFindFirst'],
  ['listInstances(filter)', () => fltport.listInstances('fltportsample'), 'FilterInstanceFindFirst'],
  ['listInstances()', () => fltport.listInstances(), 'FilterVolumeFindFirst'],
  ['listVolumes()', () => fltport.listVolumes(), 'FilterVolumeFindFirst'],
  ['listVolumeInstances(volume)', () => fltport.listVolumeInstances('C:'), 'FilterVolumeInstanceFindFirst'],
  ['getFilterInfo(name)', () => fltport.getFilterInfo('fltportsample'), 'FilterCreate'],
  ['loadFilter(name)', () => fltport.loadFilter('fltportsample'), 'FilterLoad'],
  ['unloadFilter(name)', () => fltport.unloadFilter('fltportsample'), 'FilterUnload'],
  ['attach(filter, volume)', () => fltport.attach('fltportsample', 'C:'), 'FilterAttach'],
  ['attach(filter, volume, { altitude })', () => fltport.attach('fltportsample', 'C:', { altitude: '370030' }), 'FilterAttachAtAltitude'],
  ['detach(filter, volume)', () => fltport.detach('fltportsample', 'C:'), 'FilterDetach'],
  ['dosName(volume)', () => fltport.dosName('\\Device\\HarddiskVolume1'), 'FilterGetDosName'],
  ['toDosPath(path)', () => fltport.toDosPath('\\Device\\HarddiskVolume1\\x'), 'FilterVolumeFindFirst'],
];

describe('filter-manager calls', () => {
  if (runtime.emulated) return;
  if (runtime.wine) {
    for (const [title, run, syscall] of calls) {
      it(`${title} rejects with ERROR_PROC_NOT_FOUND from ${syscall}, and the process lives on`, async () => {
        await assert.rejects(run(), (error) => {
          assert.ok(error instanceof fltport.WinError, String(error));
          assert.equal(error.code, 'ERROR_PROC_NOT_FOUND');
          assert.equal(error.hresult, ERROR_PROC_NOT_FOUND);
          assert.equal(error.syscall, syscall);
          assert.match(error.message, new RegExp(`^${syscall} failed with ERROR_PROC_NOT_FOUND \\(0x8007007F\\)`));
          return true;
        });
      });
    }
    return;
  }

  // Real Windows (unverified: needs an elevated runner).
  it('listFilters() shows the filters Windows itself loads (FileInfo), each with an altitude', async () => {
    const filters = await fltport.listFilters();
    const names = filters.map((filter) => filter.name.toLowerCase());
    assert.ok(names.includes('fileinfo'), `FileInfo is not among ${names.join(', ')}`);
    for (const filter of filters.filter((f) => f.kind === 'minifilter')) assert.match(filter.altitude, /^\d+(\.\d+)?$/);
  });

  it('listVolumes() has the system drive, and toDosPath() turns its NT paths into DOS paths', async () => {
    const system = process.env.SystemDrive ?? 'C:';
    const volumes = await fltport.listVolumes();
    const volume = volumes.find((v) => v.dosName?.toUpperCase() === system.toUpperCase());
    assert.ok(volume, `no volume has the DOS name ${system}: ${JSON.stringify(volumes)}`);
    assert.equal(await fltport.toDosPath(`${volume.name}\\Windows\\System32`), `${volume.dosName}\\Windows\\System32`);
    assert.equal(await fltport.dosName(volume.name), volume.dosName);
    const instances = await fltport.listVolumeInstances(volume.name);
    assert.ok(instances.every((instance) => instance.volumeName === volume.name));
  });

  it('getFilterInfo() of a filter that is not loaded rejects with ERROR_FLT_FILTER_NOT_FOUND', async () => {
    await assert.rejects(fltport.getFilterInfo('fltport-no-such-filter'), { code: 'ERROR_FLT_FILTER_NOT_FOUND', syscall: 'FilterCreate' });
  });
});
