'use strict';
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { FilterPort, WinError, AbortError, MAX_CONTEXT_BYTES } = require('fltport');
const { loadNative } = require('../../dist/binding/loader.js');
const { describeRuntime } = require('./helpers');

const runtime = describeRuntime();

describe('the addon in Windows node.exe', () => {
  it('runs as win32', () => {
    assert.equal(process.platform, 'win32');
  });

  it('loads and reports its runtime', () => {
    assert.equal(typeof runtime.fltlibPath, 'string');
    assert.match(runtime.fltlibPath, /fltlib\.dll$/i);
    if (runtime.wine) assert.match(runtime.wineVersion, /^\d+\.\d+/);
  });

  it('loads although ntdll lacks some LPC entry points (they are resolved at run time)', () => {
    assert.equal(runtime.ntdllEntryPoints.NtConnectPort, true);
    if (runtime.wine) {
      assert.equal(runtime.ntdllEntryPoints.NtRequestPort, false);
      assert.equal(runtime.ntdllEntryPoints.NtReplyPort, false);
    } else {
      assert.equal(runtime.ntdllEntryPoints.NtRequestPort, true);
    }
  });
});

describe('FilterPort.connect to a port that does not exist', () => {
  const expected = runtime.wineStubFltlib
    ? { code: 'E_NOTIMPL', hresult: 0x80004001 }
    : { code: 'ERROR_FILE_NOT_FOUND', hresult: 0x80070002 };

  it(`rejects with a WinError ${expected.code}`, async () => {
    await assert.rejects(FilterPort.connect('\\NoSuchPort'), (error) => {
      assert.ok(error instanceof WinError, String(error));
      assert.equal(error.code, expected.code);
      assert.equal(error.hresult, expected.hresult);
      assert.equal(error.syscall, 'FilterConnectCommunicationPort');
      assert.match(error.message, new RegExp(`^FilterConnectCommunicationPort failed with ${expected.code} \\(0x${expected.hresult.toString(16).toUpperCase()}\\)`));
      return true;
    });
  });

  it('does the same with a context, a sync handle and an inheritable handle', async () => {
    const options = { context: new Uint8Array(MAX_CONTEXT_BYTES).fill(7), syncHandle: true, inheritHandle: true };
    await assert.rejects(FilterPort.connect('\\NoSuchPort', options), { code: expected.code });
  });

  it('settles 200 concurrent attempts, each exactly once', async () => {
    const results = await Promise.allSettled(Array.from({ length: 200 }, (_, i) => FilterPort.connect(`\\NoSuchPort${i}`)));
    assert.equal(results.length, 200);
    for (const result of results) {
      assert.equal(result.status, 'rejected');
      assert.equal(result.reason.code, expected.code);
    }
  });

  it('rejects at once with an AbortError when the signal aborts during the call', async () => {
    const controller = new AbortController();
    const attempt = FilterPort.connect('\\NoSuchPort', { signal: controller.signal });
    controller.abort(new Error('changed my mind'));
    await assert.rejects(attempt, (error) => {
      assert.ok(error instanceof AbortError);
      assert.equal(error.cause.message, 'changed my mind');
      return true;
    });
  });
});

describe('bad input reaching the addon directly', () => {
  const native = loadNative();
  const cases = [
    ['a number as name', [1, null, false, false], TypeError],
    ['an empty name', ['', null, false, false], TypeError],
    ['a name with NUL', ['\\a\0b', null, false, false], TypeError],
    ['a name over 32767 units', ['x'.repeat(32768), null, false, false], RangeError],
    ['a context that is an array', ['\\P', [1, 2], false, false], TypeError],
    ['a Uint16Array context', ['\\P', new Uint16Array(2), false, false], TypeError],
    ['a context over the limit', ['\\P', new Uint8Array(MAX_CONTEXT_BYTES + 1), false, false], RangeError],
    ['a missing syncHandle', ['\\P', null], TypeError],
    ['a string inheritHandle', ['\\P', null, false, 'yes'], TypeError],
    ['inheritHandle without syncHandle', ['\\P', null, false, true], TypeError],
  ];
  for (const [title, args, type] of cases) {
    it(`throws a ${type.name} for ${title}`, () => {
      assert.throws(() => native.filterConnect(...args), (error) => error instanceof type && typeof error.code === 'string');
    });
  }
});

describe('the loader when no addon loads', () => {
  it('throws one error listing every path tried and why', () => {
    // A copy of the compiled package with no build output and a corrupt prebuilt binary.
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'fltport-loader-'));
    try {
      fs.cpSync(path.resolve(__dirname, '..', '..', 'dist'), path.join(root, 'dist'), { recursive: true });
      const prebuilt = path.join(root, 'prebuilds', `win32-${process.arch}`, 'fltport.node');
      fs.mkdirSync(path.dirname(prebuilt), { recursive: true });
      fs.writeFileSync(prebuilt, 'not a DLL');
      const { loadNative: loadCopy } = require(path.join(root, 'dist', 'binding', 'loader.js'));
      assert.throws(loadCopy, (error) => {
        assert.equal(error.code, 'ERR_FLTPORT_NATIVE_LOAD');
        const lines = error.message.split('\n');
        assert.equal(lines.length, 4);
        assert.ok(lines[1].includes(prebuilt) && !/not found/.test(lines[1]), lines[1]);
        assert.match(lines[2], /build[\\/]Release[\\/]fltport\.node: not found/);
        assert.match(lines[3], /build[\\/]Debug[\\/]fltport\.node: not found/);
        return true;
      });
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  });
});
