'use strict';
// The filter-manager API refuses bad arguments with Node's error codes before anything
// platform-specific runs (so these run on Linux); good arguments get as far as loading the
// addon, which off Windows is ERR_FLTPORT_UNSUPPORTED_PLATFORM.
const assert = require('node:assert/strict');
const fltport = require('fltport');

const { MAX_FILTER_NAME_UNITS, MAX_VOLUME_NAME_UNITS, MAX_INSTANCE_NAME_UNITS } = fltport;

const cases = [
  ['getFilterInfo without a name', () => fltport.getFilterInfo(), TypeError, 'ERR_INVALID_ARG_TYPE', /filterName must be a string/],
  ['getFilterInfo with an empty name', () => fltport.getFilterInfo(''), TypeError, 'ERR_INVALID_ARG_VALUE', /filterName must not be empty/],
  ['listInstances with a number', () => fltport.listInstances(7), TypeError, 'ERR_INVALID_ARG_TYPE', /filterName/],
  ['listInstances with a name over 255 units', () => fltport.listInstances('x'.repeat(MAX_FILTER_NAME_UNITS + 1)), RangeError, 'ERR_OUT_OF_RANGE', /255/],
  ['listVolumeInstances without a volume', () => fltport.listVolumeInstances(), TypeError, 'ERR_INVALID_ARG_TYPE', /volumeName/],
  ['listVolumeInstances with a volume over 1024 units', () => fltport.listVolumeInstances('v'.repeat(MAX_VOLUME_NAME_UNITS + 1)), RangeError, 'ERR_OUT_OF_RANGE', /1024/],
  ['loadFilter with NUL', () => fltport.loadFilter('a\0b'), TypeError, 'ERR_INVALID_ARG_VALUE', /NUL/],
  ['unloadFilter with null', () => fltport.unloadFilter(null), TypeError, 'ERR_INVALID_ARG_TYPE', /filterName/],
  ['attach without a volume', () => fltport.attach('f'), TypeError, 'ERR_INVALID_ARG_TYPE', /volumeName/],
  ['attach with options that are a string', () => fltport.attach('f', 'C:', 'x'), TypeError, 'ERR_INVALID_ARG_TYPE', /options/],
  ['attach with a numeric altitude', () => fltport.attach('f', 'C:', { altitude: 385100 }), TypeError, 'ERR_INVALID_ARG_TYPE', /options\.altitude/],
  ['attach with an altitude that is not decimal', () => fltport.attach('f', 'C:', { altitude: '38a' }), TypeError, 'ERR_INVALID_ARG_VALUE', /options\.altitude must be a decimal altitude/],
  ['attach with an instance name over 255 units', () => fltport.attach('f', 'C:', { instanceName: 'i'.repeat(MAX_INSTANCE_NAME_UNITS + 1) }), RangeError, 'ERR_OUT_OF_RANGE', /options\.instanceName/],
  ['detach with an empty instance name', () => fltport.detach('f', 'C:', ''), TypeError, 'ERR_INVALID_ARG_VALUE', /instanceName/],
  ['dosName with a Buffer', () => fltport.dosName(Buffer.from('C:')), TypeError, 'ERR_INVALID_ARG_TYPE', /volumeName/],
  ['toDosPath with an empty path', () => fltport.toDosPath(''), TypeError, 'ERR_INVALID_ARG_VALUE', /ntPath/],
];

describe('filter-manager argument validation', () => {
  for (const [title, run, type, code, message] of cases) {
    it(`refuses ${title}`, async () => {
      await assert.rejects(run(), (error) => {
        assert.ok(error instanceof type, `${error}`);
        assert.equal(error.code, code);
        assert.match(error.message, message);
        return true;
      });
    });
  }

  if (process.platform !== 'win32') {
    it('takes good arguments as far as the platform check', async () => {
      const calls = [
        () => fltport.listFilters(),
        () => fltport.listInstances(),
        () => fltport.listInstances('WdFilter'),
        () => fltport.listVolumes(),
        () => fltport.listVolumeInstances('C:'),
        () => fltport.getFilterInfo('WdFilter'),
        () => fltport.loadFilter('fltportsample'),
        () => fltport.unloadFilter('fltportsample'),
        () => fltport.attach('fltportsample', 'C:', { altitude: '370030.5', instanceName: 'i' }),
        () => fltport.detach('fltportsample', 'C:', 'i'),
        () => fltport.dosName('\\Device\\HarddiskVolume3'),
        () => fltport.toDosPath('\\Device\\HarddiskVolume3\\x'),
      ];
      for (const run of calls) await assert.rejects(run(), { code: 'ERR_FLTPORT_UNSUPPORTED_PLATFORM' });
    });
  }
});
