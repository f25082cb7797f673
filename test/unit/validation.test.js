'use strict';
const assert = require('node:assert/strict');
const { FilterPort, AbortError, MAX_CONTEXT_BYTES } = require('fltport');

// Every case must be refused before anything platform-specific runs, so these run on Linux.

/** A view whose ArrayBuffer was transferred away: it reads as 0 bytes. */
function detachedView() {
  const buffer = new ArrayBuffer(8);
  const view = new Uint8Array(buffer);
  structuredClone(buffer, { transfer: [buffer] });
  return view;
}

const badConnects = [
  ['a non-string name', [42], TypeError, 'ERR_INVALID_ARG_TYPE', /name must be a string/],
  ['a missing name', [], TypeError, 'ERR_INVALID_ARG_TYPE', /name/],
  ['an empty name', [''], TypeError, 'ERR_INVALID_ARG_VALUE', /must not be empty/],
  ['a name with NUL', ['\\Port\0x'], TypeError, 'ERR_INVALID_ARG_VALUE', /NUL/],
  ['a name over 32767 units', ['\\' + 'x'.repeat(32767)], RangeError, 'ERR_OUT_OF_RANGE', /32767/],
  ['options that are not an object', ['\\P', 'yes'], TypeError, 'ERR_INVALID_ARG_TYPE', /options/],
  ['options that are null', ['\\P', null], TypeError, 'ERR_INVALID_ARG_TYPE', /options/],
  ['a context that is a string', ['\\P', { context: 'abc' }], TypeError, 'ERR_INVALID_ARG_TYPE', /options\.context/],
  ['a context that is an ArrayBuffer', ['\\P', { context: new ArrayBuffer(4) }], TypeError, 'ERR_INVALID_ARG_TYPE', /options\.context/],
  ['a context viewing a detached ArrayBuffer', ['\\P', { context: detachedView() }], TypeError, 'ERR_INVALID_ARG_VALUE', /options\.context must not be a view of a detached ArrayBuffer/],
  ['a context over the limit', ['\\P', { context: new Uint8Array(MAX_CONTEXT_BYTES + 1) }], RangeError, 'ERR_OUT_OF_RANGE', /65512/],
  ['a syncHandle that is not boolean', ['\\P', { syncHandle: 1 }], TypeError, 'ERR_INVALID_ARG_TYPE', /options\.syncHandle/],
  ['an inheritHandle that is not boolean', ['\\P', { inheritHandle: 'no' }], TypeError, 'ERR_INVALID_ARG_TYPE', /options\.inheritHandle/],
  ['inheritHandle without syncHandle', ['\\P', { inheritHandle: true }], TypeError, 'ERR_INVALID_ARG_VALUE', /options\.inheritHandle requires options\.syncHandle/],
  ['a signal that is not an AbortSignal', ['\\P', { signal: {} }], TypeError, 'ERR_INVALID_ARG_TYPE', /options\.signal/],
];

describe('FilterPort.connect argument checks', () => {
  it('accepts an empty context (0 bytes, not detached): refused later only for the platform', async () => {
    await assert.rejects(FilterPort.connect('\\P', { context: new Uint8Array(0) }), { code: 'ERR_FLTPORT_UNSUPPORTED_PLATFORM' });
  });

  for (const [title, args, type, code, message] of badConnects) {
    it(`rejects ${title}`, async () => {
      await assert.rejects(FilterPort.connect(...args), (error) => {
        assert.ok(error instanceof type, `expected ${type.name}, got ${error}`);
        assert.equal(error.code, code);
        assert.match(error.message, message);
        return true;
      });
    });
  }

  it('accepts a context of exactly the limit (refused later only for the platform)', async () => {
    await assert.rejects(FilterPort.connect('\\P', { context: new Uint8Array(MAX_CONTEXT_BYTES) }), (error) => {
      assert.notEqual(error.code, 'ERR_OUT_OF_RANGE');
      return true;
    });
  });

  it('rejects a signal that is already aborted with an AbortError keeping the reason', async () => {
    const reason = new Error('stop');
    await assert.rejects(FilterPort.connect('\\P', { signal: AbortSignal.abort(reason) }), (error) => {
      assert.ok(error instanceof AbortError);
      assert.equal(error.code, 'ABORT_ERR');
      assert.equal(error.cause, reason);
      return true;
    });
  });
});
