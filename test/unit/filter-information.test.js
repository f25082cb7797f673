'use strict';
// The information-class parsers on hand-made buffers: well-formed ones in the layouts of
// fltuserstructures.h, then truncated ones and ones whose offsets and lengths lie. A lie is an
// ERR_FLTPORT_INVALID_INFORMATION FltportError, never a read outside the buffer.
const assert = require('node:assert/strict');
const { parseFilterInformation, parseInstanceInformation, parseVolumeInformation, fileSystemName, FltportError } = require('fltport');

const utf16 = (text) => Buffer.from(text, 'utf16le');

/**
 * One entry: `fixed` bytes of fixed part written by `writeFixed(buffer)`, then the strings,
 * each placed after the fixed part; `names` get [lengthAt, text]: the USHORT pair (length,
 * offset) is written at lengthAt.
 */
function entry(fixed, writeFixed, names = []) {
  const strings = names.map(([, text]) => utf16(text));
  const buffer = Buffer.alloc(fixed + strings.reduce((sum, s) => sum + s.length, 0));
  writeFixed(buffer);
  let at = fixed;
  names.forEach(([lengthAt], i) => {
    buffer.writeUInt16LE(strings[i].length, lengthAt);
    buffer.writeUInt16LE(at, lengthAt + 2);
    strings[i].copy(buffer, at);
    at += strings[i].length;
  });
  return buffer;
}

/** Entries chained by NextEntryOffset, each padded to 8 bytes as the filter manager aligns them. */
function chained(...entries) {
  const padded = entries.map((e) => Buffer.concat([e, Buffer.alloc((8 - (e.length % 8)) % 8)]));
  padded.forEach((e, i) => {
    if (i < padded.length - 1) e.writeUInt32LE(e.length, 0);
  });
  return Buffer.concat(padded);
}

const fullFilter = (name, frame, instances) => {
  const text = utf16(name);
  const buffer = Buffer.alloc(14 + text.length);
  buffer.writeUInt32LE(frame, 4);
  buffer.writeUInt32LE(instances, 8);
  buffer.writeUInt16LE(text.length, 12);
  text.copy(buffer, 14);
  return buffer;
};

const standardMinifilter = (name, altitude, frame, instances) =>
  entry(28, (b) => {
    b.writeUInt32LE(1, 4);
    b.writeUInt32LE(frame, 12);
    b.writeUInt32LE(instances, 16);
  }, [[20, name], [24, altitude]]);

const standardLegacy = (name, altitude) => entry(20, (b) => b.writeUInt32LE(2, 4), [[12, name], [16, altitude]]);

const basicMinifilter = (name, altitude, frame, instances) =>
  entry(24, (b) => {
    b.writeUInt32LE(1, 4);
    b.writeUInt32LE(frame, 8);
    b.writeUInt32LE(instances, 12);
  }, [[16, name], [20, altitude]]);

const instanceStandard = ({ instance, altitude, volume, filter, frame = 0, fileSystem = 2, flags = 0, features }) =>
  entry(features === undefined ? 36 : 40, (b) => {
    b.writeUInt32LE(1, 4);
    b.writeUInt32LE(flags, 8);
    b.writeUInt32LE(frame, 12);
    b.writeUInt32LE(fileSystem, 16);
    if (features !== undefined) b.writeUInt32LE(features, 36);
  }, [[20, instance], [24, altitude], [28, volume], [32, filter]]);

const volumeStandard = (name, { frame = 0, fileSystem = 2, flags = 0 } = {}) => {
  const text = utf16(name);
  const buffer = Buffer.alloc(18 + text.length);
  buffer.writeUInt32LE(flags, 4);
  buffer.writeUInt32LE(frame, 8);
  buffer.writeUInt32LE(fileSystem, 12);
  buffer.writeUInt16LE(text.length, 16);
  text.copy(buffer, 18);
  return buffer;
};

const invalidInformation = (pattern) => (error) => {
  assert.ok(error instanceof FltportError, `expected a FltportError, got ${error}`);
  assert.equal(error.code, 'ERR_FLTPORT_INVALID_INFORMATION');
  assert.match(error.message, pattern);
  return true;
};

describe('filter information parsers', () => {
  describe('FILTER_AGGREGATE_STANDARD_INFORMATION', () => {
    it('reads a chain of a minifilter and a legacy filter', () => {
      const buffer = chained(standardMinifilter('WdFilter', '328010', 0, 5), standardLegacy('OldFilter', '123'));
      assert.deepEqual(parseFilterInformation(buffer, 'aggregateStandard'), [
        { name: 'WdFilter', kind: 'minifilter', altitude: '328010', frameId: 0, instances: 5, flags: 0 },
        { name: 'OldFilter', kind: 'legacy', altitude: '123', frameId: null, instances: null, flags: 0 },
      ]);
    });

    it('refuses a name whose offset points past the entry', () => {
      const buffer = standardMinifilter('WdFilter', '328010', 0, 5);
      buffer.writeUInt16LE(buffer.length - 2, 22);
      assert.throws(() => parseFilterInformation(buffer, 'aggregateStandard'), invalidInformation(/FilterName \(16 bytes at offset \d+\) lies outside/));
    });

    it('refuses a name whose length runs past the buffer', () => {
      const buffer = standardMinifilter('WdFilter', '328010', 0, 5);
      buffer.writeUInt16LE(0xfffe, 20);
      assert.throws(() => parseFilterInformation(buffer, 'aggregateStandard'), invalidInformation(/FilterName \(65534 bytes/));
    });

    it('refuses a name that points into the fixed part', () => {
      const buffer = standardMinifilter('WdFilter', '328010', 0, 5);
      buffer.writeUInt16LE(0, 22);
      assert.throws(() => parseFilterInformation(buffer, 'aggregateStandard'), invalidInformation(/28-byte fixed part/));
    });

    it('refuses an odd name length', () => {
      const buffer = standardMinifilter('WdFilter', '328010', 0, 5);
      buffer.writeUInt16LE(15, 20);
      assert.throws(() => parseFilterInformation(buffer, 'aggregateStandard'), invalidInformation(/odd length/));
    });

    it('refuses a name that reaches into the next entry', () => {
      const first = standardMinifilter('WdFilter', '328010', 0, 5);
      const buffer = chained(first, standardLegacy('OldFilter', '123'));
      buffer.writeUInt16LE(first.length, 24); // altitude length: past its own entry, still inside the buffer
      assert.throws(() => parseFilterInformation(buffer, 'aggregateStandard'), invalidInformation(/FilterAltitude/));
    });

    it('refuses an unknown Flags value', () => {
      const buffer = standardMinifilter('WdFilter', '328010', 0, 5);
      buffer.writeUInt32LE(3, 4);
      assert.throws(() => parseFilterInformation(buffer, 'aggregateStandard'), invalidInformation(/Flags is 3/));
    });

    it('refuses every truncation of a valid buffer', () => {
      const buffer = chained(standardMinifilter('WdFilter', '328010', 0, 5), standardLegacy('OldFilter', '123'));
      for (let length = 0; length < buffer.length - 4; length += 1) {
        // The last entry's 4 bytes of padding can go without changing anything.
        assert.throws(() => parseFilterInformation(buffer.subarray(0, length), 'aggregateStandard'), invalidInformation(/./), `length ${length}`);
      }
    });
  });

  describe('NextEntryOffset chains', () => {
    it('refuses an offset past the buffer', () => {
      const buffer = chained(standardMinifilter('A', '1', 0, 0), standardMinifilter('B', '2', 0, 0));
      buffer.writeUInt32LE(buffer.length, 0);
      assert.throws(() => parseFilterInformation(buffer, 'aggregateStandard'), invalidInformation(/NextEntryOffset \d+ points outside/));
    });

    it('refuses an offset that would not move forward (a loop)', () => {
      const buffer = chained(standardMinifilter('A', '1', 0, 0), standardMinifilter('B', '2', 0, 0));
      buffer.writeUInt32LE(2, 0);
      assert.throws(() => parseFilterInformation(buffer, 'aggregateStandard'), invalidInformation(/./));
    });

    it('refuses an offset of 0xFFFFFFFF', () => {
      const buffer = chained(standardMinifilter('A', '1', 0, 0), standardMinifilter('B', '2', 0, 0));
      buffer.writeUInt32LE(0xffffffff, 0);
      assert.throws(() => parseFilterInformation(buffer, 'aggregateStandard'), invalidInformation(/NextEntryOffset 4294967295/));
    });

    it('refuses an empty buffer', () => {
      assert.throws(() => parseFilterInformation(Buffer.alloc(0), 'aggregateStandard'), invalidInformation(/needs at least 4 bytes/));
    });
  });

  describe('FILTER_FULL_INFORMATION and FILTER_AGGREGATE_BASIC_INFORMATION', () => {
    it('read a minifilter', () => {
      assert.deepEqual(parseFilterInformation(fullFilter('luafv', 0, 1), 'full'), [
        { name: 'luafv', kind: 'minifilter', altitude: null, frameId: 0, instances: 1, flags: 0 },
      ]);
      assert.deepEqual(parseFilterInformation(basicMinifilter('FileInfo', '40500', 1, 7), 'aggregateBasic'), [
        { name: 'FileInfo', kind: 'minifilter', altitude: '40500', frameId: 1, instances: 7, flags: 0 },
      ]);
      const legacy = entry(12, (b) => b.writeUInt32LE(2, 4), [[8, 'Legacy']]);
      assert.deepEqual(parseFilterInformation(legacy, 'aggregateBasic'), [
        { name: 'Legacy', kind: 'legacy', altitude: null, frameId: null, instances: null, flags: 0 },
      ]);
    });

    it('refuse an inline name longer than the buffer', () => {
      const buffer = fullFilter('luafv', 0, 1);
      buffer.writeUInt16LE(12, 12);
      assert.throws(() => parseFilterInformation(buffer, 'full'), invalidInformation(/FILTER_FULL_INFORMATION at offset 0: FilterNameBuffer/));
    });

    it('refuse a fixed part cut short', () => {
      assert.throws(() => parseFilterInformation(Buffer.alloc(12), 'full'), invalidInformation(/needs 14 bytes, the entry has 12/));
      const basic = basicMinifilter('FileInfo', '40500', 1, 7).subarray(0, 20);
      assert.throws(() => parseFilterInformation(basic, 'aggregateBasic'), invalidInformation(/Type.MiniFilter needs 24 bytes/));
    });
  });

  describe('INSTANCE_AGGREGATE_STANDARD_INFORMATION and INSTANCE_FULL_INFORMATION', () => {
    const names = { instance: 'WdFilter Instance', altitude: '328010', volume: '\\Device\\HarddiskVolume3', filter: 'WdFilter' };

    it('reads a minifilter instance with and without SupportedFeatures, and a detached volume', () => {
      const [withFeatures, without, detached] = [
        parseInstanceInformation(instanceStandard({ ...names, frame: 0, features: 3 }), 'aggregateStandard'),
        parseInstanceInformation(instanceStandard({ ...names, fileSystem: 28 }), 'aggregateStandard'),
        parseInstanceInformation(instanceStandard({ ...names, flags: 1 }), 'aggregateStandard'),
      ].map(([first]) => first);
      assert.deepEqual(withFeatures, {
        kind: 'minifilter', instanceName: names.instance, altitude: names.altitude, volumeName: names.volume, filterName: names.filter,
        frameId: 0, fileSystem: 'NTFS', detachedVolume: false, supportedFeatures: 3,
      });
      assert.equal(without.supportedFeatures, null);
      assert.equal(without.fileSystem, 'REFS');
      assert.equal(detached.detachedVolume, true);
    });

    it('reads a legacy filter entry', () => {
      const legacy = entry(28, (b) => {
        b.writeUInt32LE(2, 4);
        b.writeUInt32LE(1, 8);
        b.writeUInt32LE(9, 24);
      }, [[12, '123'], [16, names.volume], [20, 'Old']]);
      assert.deepEqual(parseInstanceInformation(legacy, 'aggregateStandard'), [{
        kind: 'legacy', instanceName: null, altitude: '123', volumeName: names.volume, filterName: 'Old',
        frameId: null, fileSystem: null, detachedVolume: true, supportedFeatures: 9,
      }]);
    });

    it('reads INSTANCE_FULL_INFORMATION', () => {
      const full = entry(20, () => {}, [[4, names.instance], [8, names.altitude], [12, names.volume], [16, names.filter]]);
      assert.deepEqual(parseInstanceInformation(chained(full, full), 'full')[1], {
        kind: 'minifilter', instanceName: names.instance, altitude: names.altitude, volumeName: names.volume, filterName: names.filter,
        frameId: null, fileSystem: null, detachedVolume: null, supportedFeatures: null,
      });
    });

    it('refuses a filter name that runs 2 bytes past the entry', () => {
      const buffer = instanceStandard(names);
      buffer.writeUInt16LE(buffer.readUInt16LE(32) + 2, 32);
      assert.throws(() => parseInstanceInformation(buffer, 'aggregateStandard'), invalidInformation(/INSTANCE_AGGREGATE_STANDARD_INFORMATION at offset 0: FilterName/));
    });

    it('refuses a volume name whose offset is past the entry', () => {
      const buffer = instanceStandard(names);
      buffer.writeUInt16LE(0xfff0, 30);
      assert.throws(() => parseInstanceInformation(buffer, 'aggregateStandard'), invalidInformation(/VolumeName \(\d+ bytes at offset 65520\)/));
    });

    it('refuses every truncation', () => {
      const buffer = instanceStandard(names);
      for (let length = 0; length < buffer.length; length += 1) {
        assert.throws(() => parseInstanceInformation(buffer.subarray(0, length), 'aggregateStandard'), invalidInformation(/./), `length ${length}`);
      }
    });

    it('names file systems newer than its list by number', () => {
      assert.equal(fileSystemName(2), 'NTFS');
      assert.equal(fileSystemName(200), 'TYPE_200');
    });
  });

  describe('FILTER_VOLUME_STANDARD_INFORMATION and FILTER_VOLUME_BASIC_INFORMATION', () => {
    it('reads a chain of volumes', () => {
      const buffer = chained(volumeStandard('\\Device\\HarddiskVolume3'), volumeStandard('\\Device\\Mup', { fileSystem: 13, flags: 1, frame: 1 }));
      assert.deepEqual(parseVolumeInformation(buffer, 'standard'), [
        { name: '\\Device\\HarddiskVolume3', frameId: 0, fileSystem: 'NTFS', detached: false },
        { name: '\\Device\\Mup', frameId: 1, fileSystem: 'MUP', detached: true },
      ]);
    });

    it('reads the basic class as one volume', () => {
      const name = utf16('\\Device\\HarddiskVolume1');
      const buffer = Buffer.concat([Buffer.from([name.length, 0]), name]);
      assert.deepEqual(parseVolumeInformation(buffer, 'basic'), [{ name: '\\Device\\HarddiskVolume1', frameId: null, fileSystem: null, detached: null }]);
      assert.throws(() => parseVolumeInformation(buffer.subarray(0, buffer.length - 2), 'basic'), invalidInformation(/FILTER_VOLUME_BASIC_INFORMATION at offset 0: FilterVolumeName/));
      assert.throws(() => parseVolumeInformation(buffer.subarray(0, 1), 'basic'), invalidInformation(/needs 2 bytes/));
    });

    it('refuses a name length past the buffer and a truncated fixed part', () => {
      const buffer = volumeStandard('\\Device\\HarddiskVolume3');
      buffer.writeUInt16LE(0xffff - 1, 16);
      assert.throws(() => parseVolumeInformation(buffer, 'standard'), invalidInformation(/FilterVolumeName \(65534 bytes/));
      assert.throws(() => parseVolumeInformation(Buffer.alloc(16), 'standard'), invalidInformation(/needs 18 bytes/));
    });
  });

  describe('arguments', () => {
    it('refuses a buffer that is not a Uint8Array and an unknown class', () => {
      assert.throws(() => parseFilterInformation('abc', 'full'), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
      assert.throws(() => parseFilterInformation(Buffer.alloc(32), 'everything'), { name: 'TypeError', code: 'ERR_INVALID_ARG_VALUE', message: /'full', 'aggregateBasic', 'aggregateStandard'/ });
      assert.throws(() => parseInstanceInformation(Buffer.alloc(32), 'basic'), { code: 'ERR_INVALID_ARG_VALUE' });
      assert.throws(() => parseVolumeInformation(Buffer.alloc(32), 'toString'), { code: 'ERR_INVALID_ARG_VALUE' });
    });

    it('reads a view at an offset inside a larger ArrayBuffer', () => {
      const inner = volumeStandard('\\Device\\X');
      const outer = new Uint8Array(inner.length + 10);
      outer.set(inner, 5);
      assert.equal(parseVolumeInformation(outer.subarray(5, 5 + inner.length), 'standard')[0].name, '\\Device\\X');
    });
  });
});
