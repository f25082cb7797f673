'use strict';
const assert = require('node:assert/strict');
const { WinError, FltportError, hresultFromWin32, hresultName, ntstatusName } = require('fltport');
const { failureOf, fromNative } = require('../../dist/lib/errors.js');

describe('WinError', () => {
  it('names an HRESULT built from a Win32 error by its Win32 name', () => {
    const error = new WinError({ syscall: 'FilterConnectCommunicationPort', hresult: 0x80070002 });
    assert.equal(error.code, 'ERROR_FILE_NOT_FOUND');
    assert.equal(error.hresult, 0x80070002);
    assert.equal(error.ntstatus, undefined);
    assert.equal(error.syscall, 'FilterConnectCommunicationPort');
    assert.equal(error.message, 'FilterConnectCommunicationPort failed with ERROR_FILE_NOT_FOUND (0x80070002)');
    assert.ok(error instanceof Error);
    assert.equal(error.name, 'WinError');
  });

  it('appends the system text when there is one', () => {
    const error = new WinError({ syscall: 'FilterSendMessage', hresult: 0x80004001, systemMessage: 'Not implemented.' });
    assert.equal(error.code, 'E_NOTIMPL');
    assert.equal(error.message, 'FilterSendMessage failed with E_NOTIMPL (0x80004001): Not implemented.');
  });

  it('names filter-manager HRESULTs and NTSTATUS codes', () => {
    assert.equal(hresultName(0x801f0020), 'ERROR_FLT_NO_WAITER_FOR_REPLY');
    assert.equal(hresultName(0x800704d6), 'ERROR_CONNECTION_COUNT_LIMIT');
    assert.equal(hresultName(0x80070057), 'E_INVALIDARG');
    assert.equal(hresultName(0x80070102), 'WAIT_TIMEOUT');
    assert.equal(ntstatusName(0xc0000037), 'STATUS_PORT_DISCONNECTED');
    assert.equal(ntstatusName(0xc0000002), 'STATUS_NOT_IMPLEMENTED');
    assert.equal(ntstatusName(0x102), 'STATUS_TIMEOUT');
  });

  it('carries an NTSTATUS as ntstatus, unsigned', () => {
    const error = new WinError({ syscall: 'NtConnectPort', ntstatus: -1073741769 /* 0xC0000037 */ });
    assert.equal(error.ntstatus, 0xc0000037);
    assert.equal(error.hresult, undefined);
    assert.equal(error.code, 'STATUS_PORT_DISCONNECTED');
    assert.match(error.message, /^NtConnectPort failed with STATUS_PORT_DISCONNECTED \(0xC0000037\)$/);
  });

  it('names unknown codes by their number', () => {
    assert.equal(hresultName(0x8badf00d), 'HRESULT_0x8BADF00D');
    assert.equal(hresultName(0x80070999), 'HRESULT_0x80070999');
    assert.equal(ntstatusName(0xc0ffee00), 'STATUS_0xC0FFEE00');
    assert.equal(new WinError({ syscall: 'X', ntstatus: 0xc0ffee00 }).code, 'STATUS_0xC0FFEE00');
  });

  it('computes HRESULT_FROM_WIN32', () => {
    assert.equal(hresultFromWin32(2), 0x80070002);
    assert.equal(hresultFromWin32(1238), 0x800704d6);
    assert.equal(hresultFromWin32(0), 0);
  });
});

describe('errors from the addon', () => {
  it('become WinErrors with the system text', () => {
    const raw = Object.assign(new Error('FilterGetMessage failed'), {
      syscall: 'FilterGetMessage', hresult: 0x80070006, systemMessage: 'The handle is invalid.',
    });
    const error = fromNative(raw);
    assert.ok(error instanceof WinError);
    assert.equal(error.code, 'ERROR_INVALID_HANDLE');
    assert.equal(error.systemMessage, 'The handle is invalid.');
  });

  it('become FltportErrors for a missing entry point', () => {
    const raw = Object.assign(new Error('ntdll.dll does not export NtReplyPort on this system'), {
      code: 'ERR_FLTPORT_MISSING_ENTRY_POINT', syscall: 'NtReplyPort',
    });
    const error = fromNative(raw);
    assert.ok(error instanceof FltportError);
    assert.equal(error.code, 'ERR_FLTPORT_MISSING_ENTRY_POINT');
    assert.equal(error.syscall, 'NtReplyPort');
    assert.match(error.message, /NtReplyPort/);
  });

  it('pass anything else through unchanged', () => {
    const other = new TypeError('bad');
    assert.equal(fromNative(other), other);
  });
});

describe('a port end seen by another call (failureOf)', () => {
  it('keeps the code, number and text, and names the call that was asked for', () => {
    const seen = new WinError({ syscall: 'FilterGetMessage', hresult: 0x80070006, systemMessage: 'The handle is invalid.' });
    const error = failureOf(seen, 'FilterSendMessage');
    assert.ok(error instanceof WinError);
    assert.equal(error.syscall, 'FilterSendMessage');
    assert.equal(error.code, 'ERROR_INVALID_HANDLE');
    assert.equal(error.hresult, 0x80070006);
    assert.equal(error.message, 'FilterSendMessage failed with ERROR_INVALID_HANDLE (0x80070006): The handle is invalid.');
  });

  it('passes the same call and anything but a WinError through unchanged; renames NTSTATUS failures too', () => {
    const seen = new WinError({ syscall: 'FilterSendMessage', hresult: 0x80070006 });
    assert.equal(failureOf(seen, 'FilterSendMessage'), seen);
    const closed = new FltportError('ERR_FLTPORT_CLOSED', 'closed');
    assert.equal(failureOf(closed, 'FilterSendMessage'), closed);
    const status = failureOf(new WinError({ syscall: 'NtRequestPort', ntstatus: 0xc0000037 }), 'NtReplyPort');
    assert.equal(status.ntstatus, 0xc0000037);
    assert.equal(status.code, 'STATUS_PORT_DISCONNECTED');
    assert.equal(status.syscall, 'NtReplyPort');
  });
});
