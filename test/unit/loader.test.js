'use strict';
const assert = require('node:assert/strict');
const path = require('node:path');
const fltport = require('fltport');
const { candidatePaths } = require('../../dist/binding/loader.js');

describe('on a platform other than Windows', function () {
  before(function () {
    if (process.platform === 'win32') this.skip();
  });

  it('importing fltport works', () => {
    assert.equal(typeof fltport.FilterPort.connect, 'function');
  });

  it('FilterPort.connect rejects with ERR_FLTPORT_UNSUPPORTED_PLATFORM', async () => {
    await assert.rejects(fltport.FilterPort.connect('\\AnyPort'), (error) => {
      assert.ok(error instanceof fltport.FltportError);
      assert.equal(error.code, 'ERR_FLTPORT_UNSUPPORTED_PLATFORM');
      assert.match(error.message, new RegExp(process.platform));
      return true;
    });
  });

  it('runtimeInfo throws ERR_FLTPORT_UNSUPPORTED_PLATFORM', () => {
    assert.throws(() => fltport.runtimeInfo(), { code: 'ERR_FLTPORT_UNSUPPORTED_PLATFORM' });
  });

  it('the ESM entry point exports the same classes', async () => {
    const esm = await import('fltport');
    assert.equal(esm.FilterPort, fltport.FilterPort);
    assert.equal(esm.WinError, fltport.WinError);
  });
});

describe('the loader', () => {
  it('looks for a prebuilt binary first, then build/Release, then build/Debug', () => {
    const root = path.resolve(__dirname, '..', '..');
    assert.deepEqual(candidatePaths('win32', 'arm64'), [
      path.join(root, 'prebuilds', 'win32-arm64', 'fltport.node'),
      path.join(root, 'build', 'Release', 'fltport.node'),
      path.join(root, 'build', 'Debug', 'fltport.node'),
    ]);
  });
});
