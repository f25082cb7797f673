'use strict';
// The emulator's fltlib.dll called directly (koffi), where the API cannot look: buffer sizes and
// ERROR_INSUFFICIENT_BUFFER with the size needed, enumerations that do not move on after a buffer
// too small, the end, closed handles, every information class, and the SeLoadDriverPrivilege
// check of FilterLoad. What each call must do is what fltport relies on (src/win/filter_manager.cc)
// and what Microsoft documents; the emulator's own choices are in emulator/README.md.
const assert = require('node:assert/strict');
const { execFile } = require('node:child_process');
const path = require('node:path');
const koffi = require('koffi');
const fltport = require('fltport');
const { useFilters } = require('./filters');

const fltlib = koffi.load('fltlib.dll');
const api = {
  FilterFindFirst: fltlib.func('int32 __stdcall FilterFindFirst(int cls, void *buffer, uint32 bytes, _Out_ uint32 *returned, _Out_ void **handle)'),
  FilterFindNext: fltlib.func('int32 __stdcall FilterFindNext(void *handle, int cls, void *buffer, uint32 bytes, _Out_ uint32 *returned)'),
  FilterFindClose: fltlib.func('int32 __stdcall FilterFindClose(void *handle)'),
  FilterVolumeFindFirst: fltlib.func('int32 __stdcall FilterVolumeFindFirst(int cls, void *buffer, uint32 bytes, _Out_ uint32 *returned, _Out_ void **handle)'),
  FilterVolumeFindClose: fltlib.func('int32 __stdcall FilterVolumeFindClose(void *handle)'),
  FilterInstanceFindFirst: fltlib.func('int32 __stdcall FilterInstanceFindFirst(const char16_t *filter, int cls, void *buffer, uint32 bytes, _Out_ uint32 *returned, _Out_ void **handle)'),
  FilterInstanceFindClose: fltlib.func('int32 __stdcall FilterInstanceFindClose(void *handle)'),
  FilterCreate: fltlib.func('int32 __stdcall FilterCreate(const char16_t *name, _Out_ void **filter)'),
  FilterGetInformation: fltlib.func('int32 __stdcall FilterGetInformation(void *filter, int cls, void *buffer, uint32 bytes, _Out_ uint32 *returned)'),
  FilterClose: fltlib.func('int32 __stdcall FilterClose(void *filter)'),
  FilterGetDosName: fltlib.func('int32 __stdcall FilterGetDosName(const char16_t *volume, void *dosName, uint32 chars)'),
};

const S_OK = 0;
const E_HANDLE = 0x80070006;
const INSUFFICIENT_BUFFER = 0x8007007a;
const NO_MORE_ITEMS = 0x80070103;
const hr = (value) => value >>> 0;

/** FindFirst/Next with `call(buffer, bytes, returned)`: S_OK entries as Buffers, each first asked with too small a buffer. */
function walkAskingSmallFirst(first, next) {
  const entries = [];
  const handle = [null];
  let returned = [0];
  assert.equal(hr(first(Buffer.alloc(4), 4, returned, handle)), INSUFFICIENT_BUFFER);
  assert.ok(returned[0] > 4, `the size needed, got ${returned[0]}`);
  let buffer = Buffer.alloc(returned[0]);
  assert.equal(hr(first(buffer, buffer.length, returned = [0], handle)), S_OK);
  assert.equal(returned[0], buffer.length);
  entries.push(buffer);
  for (;;) {
    const asked = [0];
    const result = hr(next(handle[0], Buffer.alloc(2), 2, asked));
    if (result === NO_MORE_ITEMS) break;
    assert.equal(result, INSUFFICIENT_BUFFER);
    buffer = Buffer.alloc(asked[0]);
    assert.equal(hr(next(handle[0], buffer, buffer.length, returned = [0])), S_OK);
    entries.push(buffer);
  }
  return { entries, handle: handle[0] };
}

describe('the emulator\'s fltlib.dll, called directly', function () {
  const emulated = useFilters();

  it('FilterFindFirst/Next: a buffer too small gets ERROR_INSUFFICIENT_BUFFER with the size needed, and the walk stays put', async () => {
    const { entries, handle } = walkAskingSmallFirst(
      (buffer, bytes, returned, out) => api.FilterFindFirst(2, buffer, bytes, returned, out),
      (h, buffer, bytes, returned) => api.FilterFindNext(h, 2, buffer, bytes, returned),
    );
    const names = entries.flatMap((entry) => fltport.parseFilterInformation(entry, 'aggregateStandard')).map((filter) => filter.name);
    assert.deepEqual(names.sort(), (await fltport.listFilters()).map((filter) => filter.name).sort());
    assert.equal(hr(api.FilterFindNext(handle, 2, Buffer.alloc(256), 256, [0])), NO_MORE_ITEMS);
    assert.equal(hr(api.FilterFindClose(handle)), S_OK);
    assert.equal(hr(api.FilterFindClose(handle)), E_HANDLE);
    assert.equal(hr(api.FilterFindNext(handle, 2, Buffer.alloc(256), 256, [0])), E_HANDLE);
  });

  it('every filter and volume information class parses, and agrees with the others', async () => {
    const byClass = {};
    for (const [cls, name] of [[0, 'full'], [1, 'aggregateBasic'], [2, 'aggregateStandard']]) {
      const { entries, handle } = walkAskingSmallFirst(
        (buffer, bytes, returned, out) => api.FilterFindFirst(cls, buffer, bytes, returned, out),
        (h, buffer, bytes, returned) => api.FilterFindNext(h, cls, buffer, bytes, returned),
      );
      api.FilterFindClose(handle);
      byClass[name] = entries.flatMap((entry) => fltport.parseFilterInformation(entry, name)).find((filter) => filter.name === emulated.sampleName);
    }
    assert.deepEqual(byClass.full, { name: emulated.sampleName, kind: 'minifilter', altitude: null, frameId: 0, instances: byClass.aggregateStandard.instances, flags: 0 });
    assert.deepEqual(byClass.aggregateBasic, byClass.aggregateStandard);

    const volumes = {};
    for (const [cls, name] of [[0, 'basic'], [1, 'standard']]) {
      const buffer = Buffer.alloc(4096);
      const handle = [null];
      const returned = [0];
      assert.equal(hr(api.FilterVolumeFindFirst(cls, buffer, buffer.length, returned, handle)), S_OK);
      api.FilterVolumeFindClose(handle[0]);
      volumes[name] = fltport.parseVolumeInformation(buffer.subarray(0, returned[0]), name)[0];
    }
    assert.equal(volumes.basic.name, volumes.standard.name);
  });

  it('FilterInstanceFindFirst: every instance class of the sample\'s instance parses', () => {
    const parsed = {};
    for (const [cls, name] of [[2, 'full'], [3, 'aggregateStandard']]) {
      const buffer = Buffer.alloc(4096);
      const handle = [null];
      const returned = [0];
      assert.equal(hr(api.FilterInstanceFindFirst(emulated.sampleName, cls, buffer, buffer.length, returned, handle)), S_OK);
      api.FilterInstanceFindClose(handle[0]);
      parsed[name] = fltport.parseInstanceInformation(buffer.subarray(0, returned[0]), name)[0];
    }
    for (const field of ['instanceName', 'altitude', 'volumeName', 'filterName']) assert.equal(parsed.full[field], parsed.aggregateStandard[field]);
    // Basic (0) and partial (1) are prefixes of the full layout: the name at the same place.
    const basic = Buffer.alloc(512);
    const handle = [null];
    const returned = [0];
    assert.equal(hr(api.FilterInstanceFindFirst(emulated.sampleName, 0, basic, basic.length, returned, handle)), S_OK);
    api.FilterInstanceFindClose(handle[0]);
    const nameBytes = basic.readUInt16LE(4);
    assert.equal(basic.toString('utf16le', basic.readUInt16LE(6), basic.readUInt16LE(6) + nameBytes), parsed.full.instanceName);
  });

  it('FilterCreate / FilterGetInformation / FilterClose, and the handle after FilterClose', () => {
    const filter = [null];
    assert.equal(hr(api.FilterCreate(emulated.sampleName, filter)), S_OK);
    const returned = [0];
    assert.equal(hr(api.FilterGetInformation(filter[0], 2, Buffer.alloc(8), 8, returned)), INSUFFICIENT_BUFFER);
    const buffer = Buffer.alloc(returned[0]);
    assert.equal(hr(api.FilterGetInformation(filter[0], 2, buffer, buffer.length, returned)), S_OK);
    assert.equal(fltport.parseFilterInformation(buffer, 'aggregateStandard')[0].name, emulated.sampleName);
    assert.equal(hr(api.FilterClose(filter[0])), S_OK);
    assert.equal(hr(api.FilterGetInformation(filter[0], 2, buffer, buffer.length, returned)), E_HANDLE);
  });

  it('FilterGetDosName counts its buffer in characters', () => {
    const name = Buffer.alloc(16);
    assert.equal(hr(api.FilterGetDosName('C:\\', name, 2)), INSUFFICIENT_BUFFER);
    assert.equal(hr(api.FilterGetDosName('C:\\', name, 3)), S_OK);
    assert.equal(name.toString('utf16le', 0, 6), 'C:\0');
  });

  describe('SeLoadDriverPrivilege', () => {
    const child = (mode, filter) =>
      new Promise((resolve, reject) => {
        execFile(process.execPath, [path.join(__dirname, 'privilege-child.js'), mode, filter], (error, stdout) => {
          if (error) reject(error);
          else resolve(JSON.parse(stdout));
        });
      });

    it('FilterLoad fails with ERROR_PRIVILEGE_NOT_HELD while it is disabled; loadFilter() enables it for its call', async () => {
      const outcome = await child('disable', emulated.sampleName);
      assert.equal(outcome.adjusted, true, JSON.stringify(outcome));
      assert.equal(outcome.direct, 0x80070522);
      // Past the privilege check: the filter runs already.
      assert.equal(outcome.api, 'ERROR_SERVICE_ALREADY_RUNNING');
    });

    it('loadFilter() fails with ERROR_PRIVILEGE_NOT_HELD when the token lacks it', async function () {
      const outcome = await child('remove', emulated.sampleName);
      if (!outcome.adjusted) this.skip(); // Wine cannot remove a privilege from a token
      assert.equal(outcome.direct, 0x80070522);
      assert.equal(outcome.api, 'ERROR_PRIVILEGE_NOT_HELD');
    });
  });
});
