'use strict';
// LPC ports in Windows node.exe. Under Wine, ntdll's LPC calls answer STATUS_NOT_IMPLEMENTED
// (or are not exported), so what runs here is loading, argument checks, the errors of the
// first calls, and missing entry points. The end-to-end suite is test/windows-native/lpc.test.js.
const assert = require('node:assert/strict');
const { LpcPort, LpcServerPort, WinError, FltportError, AbortError, MAX_LPC_CONNECTION_INFO_BYTES } = require('fltport');
const { loadNative } = require('../../dist/binding/loader.js');
const { describeRuntime } = require('./helpers');

const runtime = describeRuntime();
// Real Windows has no port of this name: NtConnectPort fails to find it.
const connectFailure = runtime.wine
  ? { code: 'STATUS_NOT_IMPLEMENTED', ntstatus: 0xc0000002 }
  : { code: 'STATUS_OBJECT_NAME_NOT_FOUND', ntstatus: 0xc0000034 };
const noSuchPort = '\\RPC Control\\fltport-no-such-port';

function isWinError(expected, syscall) {
  return (error) => {
    assert.ok(error instanceof WinError, String(error));
    assert.equal(error.code, expected.code);
    assert.equal(error.ntstatus, expected.ntstatus);
    assert.equal(error.hresult, undefined);
    assert.equal(error.syscall, syscall);
    assert.match(error.message, new RegExp(`^${syscall} failed with ${expected.code} \\(0x${expected.ntstatus.toString(16).toUpperCase()}\\)`));
    return true;
  };
}

describe('LPC ports: loading', () => {
  it('exports the LPC functions although ntdll lacks some entry points', () => {
    const native = loadNative();
    for (const name of ['lpcConnect', 'lpcCreateServer', 'lpcMissingEntryPoint']) assert.equal(typeof native[name], 'function');
    assert.equal(runtime.ntdllEntryPoints.NtConnectPort, true);
  });
});

describe('LpcPort.connect to a port that does not exist', () => {
  it(`rejects with a WinError ${connectFailure.code} from NtConnectPort`, async () => {
    await assert.rejects(LpcPort.connect(noSuchPort), isWinError(connectFailure, 'NtConnectPort'));
  });

  it('does the same with connection info, a security QoS and a 1 MiB view (the section is made, then released)', async () => {
    const options = {
      connectionInfo: new Uint8Array(MAX_LPC_CONNECTION_INFO_BYTES).fill(1),
      securityQos: { impersonationLevel: 'identification', dynamicTracking: false, effectiveOnly: true },
      view: { bytes: 1 << 20 },
    };
    await assert.rejects(LpcPort.connect(noSuchPort, options), isWinError(connectFailure, 'NtConnectPort'));
  });

  it('goes through NtSecureConnectPort when a server SID is given', async () => {
    await assert.rejects(LpcPort.connect(noSuchPort, { serverSid: 'S-1-5-18' }), isWinError(connectFailure, 'NtSecureConnectPort'));
  });

  it('refuses a malformed server SID before any call', async () => {
    for (const serverSid of ['not a SID', 'S-1-5-18\0junk', '']) {
      await assert.rejects(LpcPort.connect(noSuchPort, { serverSid }), (error) => {
        assert.ok(error instanceof TypeError, `${JSON.stringify(serverSid)}: ${error}`);
        assert.equal(error.code, 'ERR_INVALID_ARG_VALUE');
        assert.match(error.message, /serverSid/);
        return true;
      });
    }
  });

  it('refuses connection info over 128 bytes with a RangeError before any call', async () => {
    await assert.rejects(LpcPort.connect(noSuchPort, { connectionInfo: new Uint8Array(129) }), (error) => {
      assert.ok(error instanceof RangeError);
      assert.match(error.message, /options\.connectionInfo\.byteLength must be at most 128/);
      return true;
    });
  });

  it('settles 100 concurrent attempts, each exactly once', async () => {
    const results = await Promise.allSettled(Array.from({ length: 100 }, (_, i) => LpcPort.connect(`${noSuchPort}-${i}`)));
    for (const result of results) {
      assert.equal(result.status, 'rejected');
      assert.equal(result.reason.code, connectFailure.code);
    }
  });

  it('rejects at once with an AbortError when the signal aborts during the call', async () => {
    const controller = new AbortController();
    const attempt = LpcPort.connect(noSuchPort, { signal: controller.signal });
    controller.abort(new Error('never mind'));
    await assert.rejects(attempt, (error) => error instanceof AbortError && error.cause.message === 'never mind');
  });
});

describe('LpcServerPort.create', () => {
  if (runtime.wine) {
    it('rejects with a WinError STATUS_NOT_IMPLEMENTED from NtCreatePort under Wine', async () => {
      await assert.rejects(
        LpcServerPort.create('\\RPC Control\\fltport-wine-server', { maxMessageBytes: 100, maxConnectionInfoBytes: 16 }),
        isWinError({ code: 'STATUS_NOT_IMPLEMENTED', ntstatus: 0xc0000002 }, 'NtCreatePort'),
      );
    });
  } else {
    it('creates a port and closes it again', async () => {
      const server = await LpcServerPort.create(`\\RPC Control\\fltport-create-${process.pid}`);
      assert.equal(server.maxMessageBytes, 472);
      await server.close();
      assert.equal(server.closed, true);
    });
  }

  it('refuses maxMessageBytes over 472 with a RangeError before any call', async () => {
    await assert.rejects(LpcServerPort.create('\\RPC Control\\x', { maxMessageBytes: 473 }), RangeError);
  });
});

describe('missing ntdll entry points', () => {
  if (runtime.wine) {
    it('LpcPort.checkAvailable() names NtRequestPort, which Wine does not export', () => {
      assert.throws(() => LpcPort.checkAvailable(), (error) => {
        assert.ok(error instanceof FltportError);
        assert.equal(error.code, 'ERR_FLTPORT_MISSING_ENTRY_POINT');
        assert.equal(error.syscall, 'NtRequestPort');
        assert.match(error.message, /ntdll\.dll does not export NtRequestPort/);
        return true;
      });
    });

    it('LpcServerPort.checkAvailable() names the first server call Wine lacks', () => {
      assert.throws(() => LpcServerPort.checkAvailable(), (error) => {
        assert.equal(error.code, 'ERR_FLTPORT_MISSING_ENTRY_POINT');
        assert.equal(error.syscall, 'NtReplyWaitReceivePortEx');
        return true;
      });
    });
  } else {
    it('finds every LPC call on Windows', () => {
      LpcPort.checkAvailable();
      LpcServerPort.checkAvailable();
    });
  }
});

describe('bad LPC input reaching the addon directly', () => {
  const native = loadNative();
  const ok = ['\\P', null, 2, true, false, 0, null];
  const withArg = (index, value) => ok.map((arg, i) => (i === index ? value : arg));
  const cases = [
    ['lpcConnect', 'a number as name', withArg(0, 5), TypeError],
    ['lpcConnect', 'a name with NUL', withArg(0, '\\a\0b'), TypeError],
    ['lpcConnect', 'connection info over 128 bytes', withArg(1, new Uint8Array(129)), RangeError],
    ['lpcConnect', 'an impersonation level of 4', withArg(2, 4), RangeError],
    ['lpcConnect', 'a missing dynamicTracking', withArg(3, undefined), TypeError],
    ['lpcConnect', 'a view over 1 GiB', withArg(5, 2 ** 30 + 1), RangeError],
    ['lpcConnect', 'a numeric serverSid', withArg(6, 18), TypeError],
    ['lpcConnect', 'a malformed serverSid', withArg(6, 'S-x'), TypeError],
    ['lpcCreateServer', 'an empty name', ['', 128, 512], TypeError],
    ['lpcCreateServer', 'connection info max over 128', ['\\P', 129, 512], RangeError],
    ['lpcCreateServer', 'a message length over 512', ['\\P', 128, 513], RangeError],
    ['lpcCreateServer', 'a message length below the header', ['\\P', 128, 39], RangeError],
    ['lpcMissingEntryPoint', 'an unknown role', ['everyone'], TypeError],
  ];
  for (const [fn, title, args, type] of cases) {
    it(`${fn} throws a ${type.name} for ${title}`, () => {
      assert.throws(() => native[fn](...args), (error) => error instanceof type && typeof error.code === 'string');
    });
  }
});
