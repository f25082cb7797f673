'use strict';
// The fltport command's tables and byte previews.
const assert = require('node:assert/strict');
const { table, hexPreview, utf16Preview } = require('../../dist/lib/cli/format.js');

describe('fltport output formatting', () => {
  it('lays out a table like fltmc: headers, a dashed rule, columns as wide as their widest cell, numbers right-aligned', () => {
    const rows = [
      { name: 'bindflt', instances: 1, altitude: '409800' },
      { name: 'FileInfo', instances: 12, altitude: '40500' },
    ];
    const text = table(rows, [
      { header: 'Filter Name', value: (r) => r.name },
      { header: 'Num Instances', value: (r) => String(r.instances), right: true },
      { header: 'Altitude', value: (r) => r.altitude, right: true },
    ]);
    assert.equal(
      text,
      'Filter Name  Num Instances  Altitude\n' +
        '-----------  -------------  --------\n' +
        'bindflt                  1    409800\n' +
        'FileInfo                12     40500\n',
    );
    assert.equal(table([], [{ header: 'A', value: () => '' }]), 'A\n-\n');
  });

  it('previews bytes as hex (32 bytes) and UTF-16 (64 characters)', () => {
    assert.equal(hexPreview(Buffer.from([0, 1, 0xab])), '00 01 ab');
    assert.equal(hexPreview(Buffer.alloc(0)), '');
    const long = Buffer.alloc(40, 0x41);
    assert.equal(hexPreview(long), `${'41 '.repeat(31)}41 …`);
    assert.equal(utf16Preview(Buffer.from('C:\\x.txt', 'utf16le')), 'C:\\x.txt');
    assert.equal(utf16Preview(Buffer.from('a\u0001b', 'utf16le')), 'a.b');
    assert.equal(utf16Preview(Buffer.from('abc', 'utf16le').subarray(0, 5)), 'ab…');
    assert.equal(utf16Preview(Buffer.from('x'.repeat(64), 'utf16le')), 'x'.repeat(64));
    assert.equal(utf16Preview(Buffer.from('x'.repeat(70), 'utf16le')), `${'x'.repeat(64)}…`);
  });
});
