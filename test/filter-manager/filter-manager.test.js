'use strict';
// The filter-manager API end to end: Windows node.exe, the emulator's fltlib.dll and fltmgr.sys
// under Wine, the sample minifilter (fltportsample.sys at 370035) and wdkstyle.sys (at 380000)
// loaded as the suite's filters. Volumes are Wine's drives (C: and Z:).
const assert = require('node:assert/strict');
const { once } = require('node:events');
const readline = require('node:readline');
const koffi = require('koffi');
const fltport = require('fltport');
const protocol = require('../../driver-sample/protocol');
const { spawnTool, CONTROL_EXE, FILE_OPEN_OPTIONS } = require('../../driver-sample/emulated');
const { useFilters } = require('./filters');
const drivers = require('../../emulator/drivers');

const { WinError } = fltport;
const isWinError = (code, syscall) => (error) => {
  assert.ok(error instanceof WinError, String(error));
  assert.equal(error.code, code, error.message);
  if (syscall !== undefined) assert.equal(error.syscall, syscall);
  return true;
};

describe('filter-manager API against the emulated filter manager', function () {
  const emulated = useFilters();
  let volumes;
  before(async () => {
    volumes = await fltport.listVolumes();
  });

  const filterNamed = async (name) => (await fltport.listFilters()).find((filter) => filter.name === name);
  const systemVolume = () => volumes.find((volume) => volume.dosName === 'C:');

  describe('volumes, DOS names and paths', () => {
    it('listVolumes() has the machine\'s drives, each with its NT name, DOS name and file system', async () => {
      assert.ok(volumes.length >= 1);
      for (const volume of volumes) {
        assert.match(volume.name, /^\\Device\\/);
        assert.match(volume.dosName, /^[A-Z]:$/);
        assert.equal(volume.frameId, 0);
        assert.equal(volume.detached, false);
        assert.equal(typeof volume.fileSystem, 'string');
      }
      assert.equal(systemVolume().fileSystem, 'NTFS');
      assert.equal(new Set(volumes.map((volume) => volume.name)).size, volumes.length);
    });

    it('dosName() answers for NT names and drive letters, and fails for an unknown volume', async () => {
      const c = systemVolume();
      assert.equal(await fltport.dosName(c.name), 'C:');
      assert.equal(await fltport.dosName(`${c.name}\\`), 'C:');
      assert.equal(await fltport.dosName('c:'), 'C:');
      await assert.rejects(fltport.dosName('\\Device\\NoSuchVolume'), isWinError('ERROR_FILE_NOT_FOUND', 'FilterGetDosName'));
    });

    it('toDosPath() turns NT paths into DOS paths, in any case, and null off every volume', async () => {
      const c = systemVolume();
      assert.equal(await fltport.toDosPath(`${c.name}\\Users\\x.txt`), 'C:\\Users\\x.txt');
      assert.equal(await fltport.toDosPath(`${c.name.toUpperCase()}\\A\\b`), 'C:\\A\\b');
      assert.equal(await fltport.toDosPath(c.name), 'C:\\');
      // A prefix of a volume's name is not that volume (HarddiskVolume1 vs HarddiskVolume10).
      assert.equal(await fltport.toDosPath(`${c.name}0\\x`), null);
      assert.equal(await fltport.toDosPath('\\Device\\NoSuchVolume\\x'), null);
    });

    it('toDosPath() refreshes for a device it did not find at most every 10 s (docs/api.md, the filter manager: toDosPath), not on every path', async () => {
      const DefineDosDeviceW = koffi.load('kernel32.dll').func('bool __stdcall DefineDosDeviceW(uint32 flags, const char16_t *name, const char16_t *target)');
      const letter = ['Q:', 'R:', 'S:', 'T:'].find((candidate) => !volumes.some((volume) => volume.dosName === candidate));
      const device = `\\Device\\FltportUnknownFirst${process.pid}`;
      const missed = Date.now();
      assert.equal(await fltport.toDosPath(`${device}\\x`), null); // refreshed, not found
      assert.equal(DefineDosDeviceW(0x1, letter, device), true);
      try {
        const found = await fltport.toDosPath(`${device}\\x`);
        // Within the 10 s no refresh: the volume mounted meanwhile is not seen yet.
        if (Date.now() - missed < 10_000) assert.equal(found, null);
        else assert.equal(found, `${letter}\\x`);
      } finally {
        DefineDosDeviceW(0x1 | 0x2 | 0x4, letter, device);
      }
    });

    it('toDosPath() finds a volume mounted after its cache was filled', async () => {
      const DefineDosDeviceW = koffi.load('kernel32.dll').func('bool __stdcall DefineDosDeviceW(uint32 flags, const char16_t *name, const char16_t *target)');
      const DDD_RAW_TARGET_PATH = 0x1;
      const DDD_REMOVE_DEFINITION = 0x2;
      const DDD_EXACT_MATCH_ON_REMOVE = 0x4;
      const letter = ['Q:', 'R:', 'S:', 'T:'].find((candidate) => !volumes.some((volume) => volume.dosName === candidate));
      const device = `\\Device\\FltportLaterVolume${process.pid}`;
      assert.equal(await fltport.toDosPath(`${systemVolume().name}\\x`), 'C:\\x'); // the cache is filled
      assert.equal(DefineDosDeviceW(DDD_RAW_TARGET_PATH, letter, device), true);
      try {
        assert.equal(await fltport.toDosPath(`${device}\\Users\\later.txt`), `${letter}\\Users\\later.txt`);
      } finally {
        DefineDosDeviceW(DDD_RAW_TARGET_PATH | DDD_REMOVE_DEFINITION | DDD_EXACT_MATCH_ON_REMOVE, letter, device);
      }
    });
  });

  describe('filters and instances', () => {
    it('listFilters() shows the loaded minifilters with their altitude, frame 0 and one instance per volume', async () => {
      const filters = await fltport.listFilters();
      const sampleFilter = filters.find((filter) => filter.name === emulated.sampleName);
      const wdk = filters.find((filter) => filter.name === emulated.wdkName);
      assert.deepEqual(sampleFilter, { name: emulated.sampleName, kind: 'minifilter', altitude: '370035', frameId: 0, instances: volumes.length, flags: 0 });
      assert.equal(wdk.altitude, '380000');
      assert.deepEqual(await fltport.getFilterInfo(emulated.sampleName), sampleFilter);
    });

    it('getFilterInfo() and listInstances() of a filter that is not loaded fail with ERROR_FLT_FILTER_NOT_FOUND', async () => {
      await assert.rejects(fltport.getFilterInfo('fltport-no-such-filter'), isWinError('ERROR_FLT_FILTER_NOT_FOUND', 'FilterCreate'));
      await assert.rejects(fltport.listInstances('fltport-no-such-filter'), isWinError('ERROR_FLT_FILTER_NOT_FOUND', 'FilterInstanceFindFirst'));
    });

    it('listInstances(filter) has its default instance on every volume (automatic attachment)', async () => {
      const instances = await fltport.listInstances(emulated.sampleName);
      assert.deepEqual(instances.map((instance) => instance.volumeName).sort(), volumes.map((volume) => volume.name).sort());
      for (const instance of instances) {
        assert.equal(instance.instanceName, `${emulated.sampleName} Instance`);
        assert.equal(instance.altitude, '370035');
        assert.equal(instance.filterName, emulated.sampleName);
        assert.equal(instance.kind, 'minifilter');
        assert.equal(instance.frameId, 0);
        assert.equal(instance.detachedVolume, false);
      }
    });

    it('listVolumeInstances() lists a volume\'s instances from the highest altitude down, by NT name or drive letter', async () => {
      const byLetter = await fltport.listVolumeInstances('C:');
      const ours = byLetter.filter((instance) => instance.filterName === emulated.sampleName || instance.filterName === emulated.wdkName);
      assert.deepEqual(ours.map((instance) => instance.altitude), ['380000', '370035']);
      assert.deepEqual(await fltport.listVolumeInstances(systemVolume().name), byLetter);
      await assert.rejects(fltport.listVolumeInstances('\\Device\\NoSuchVolume'), isWinError('ERROR_FLT_VOLUME_NOT_FOUND', 'FilterVolumeInstanceFindFirst'));
    });

    it('listInstances() lists every volume\'s instances', async () => {
      const all = await fltport.listInstances();
      assert.equal(all.filter((instance) => instance.filterName === emulated.sampleName).length, volumes.length);
      assert.equal(all.filter((instance) => instance.filterName === emulated.wdkName).length, volumes.length);
    });
  });

  describe('attach and detach', () => {
    it('detach() takes the default instance off a volume; attach() puts it back', async () => {
      await fltport.detach(emulated.sampleName, 'C:');
      try {
        assert.equal((await fltport.listVolumeInstances('C:')).some((instance) => instance.filterName === emulated.sampleName), false);
        assert.equal((await filterNamed(emulated.sampleName)).instances, volumes.length - 1);
        await assert.rejects(fltport.detach(emulated.sampleName, 'C:'), isWinError('ERROR_FLT_INSTANCE_NOT_FOUND', 'FilterDetach'));
      } finally {
        assert.equal(await fltport.attach(emulated.sampleName, 'C:'), `${emulated.sampleName} Instance`);
      }
      assert.equal((await filterNamed(emulated.sampleName)).instances, volumes.length);
      await assert.rejects(fltport.attach(emulated.sampleName, 'C:'), isWinError('ERROR_FLT_INSTANCE_NAME_COLLISION', 'FilterAttach'));
    });

    it('attach() at an altitude makes a named instance; names and altitudes collide as on Windows', async () => {
      const created = await fltport.attach(emulated.sampleName, systemVolume().name, { altitude: '370036.5', instanceName: 'fltport extra' });
      try {
        assert.equal(created, 'fltport extra');
        const onC = await fltport.listVolumeInstances('C:');
        const extra = onC.find((instance) => instance.instanceName === 'fltport extra');
        assert.equal(extra.altitude, '370036.5');
        assert.equal(extra.filterName, emulated.sampleName);
        assert.equal((await filterNamed(emulated.sampleName)).instances, volumes.length + 1);
        await assert.rejects(
          fltport.attach(emulated.sampleName, 'C:', { altitude: '370037', instanceName: 'fltport extra' }),
          isWinError('ERROR_FLT_INSTANCE_NAME_COLLISION', 'FilterAttachAtAltitude'),
        );
        await assert.rejects(
          fltport.attach(emulated.sampleName, 'C:', { altitude: '380000', instanceName: 'fltport third' }),
          isWinError('ERROR_FLT_INSTANCE_ALTITUDE_COLLISION', 'FilterAttachAtAltitude'),
        );
      } finally {
        await fltport.detach(emulated.sampleName, 'C:', 'fltport extra');
      }
      assert.equal((await fltport.listVolumeInstances('C:')).some((instance) => instance.instanceName === 'fltport extra'), false);
    });

    it('decide which filters see an open: detached from C:, the sample\'s callbacks run for no open there', async () => {
      // An agent that denies every open: 'deny' shows the sample's pre-create callback ran.
      const agentPort = await fltport.FilterPort.connect(protocol.PORT_NAME, { context: protocol.connectContext({ agent: true }) });
      const agent = (async () => {
        for await (const message of agentPort.messages()) {
          const open = protocol.decodeMessage(message);
          if (open.kind === 'open') await protocol.replyVerdict(message, open.sequence, false);
        }
      })().catch((error) => {
        if (error?.code !== 'ERR_FLTPORT_CLOSED') throw error;
      });
      const onVolume = (volume, label) => `${volume}\\fltport-attach\\${label}${protocol.DEFAULT_SUFFIX}`;
      try {
        assert.equal((await emulated.sample.open(onVolume(systemVolume().name, 'attached'))).verdict, 'deny');
        await fltport.detach(emulated.sampleName, 'C:');
        try {
          assert.equal((await emulated.sample.open(onVolume(systemVolume().name, 'detached'))).verdict, 'allow');
          // Another volume keeps the default instance (a name that merely begins with C:'s is not on C:).
          assert.equal((await emulated.sample.open(onVolume(`${systemVolume().name}0`, 'other'))).verdict, 'deny');
        } finally {
          await fltport.attach(emulated.sampleName, 'C:');
        }
        assert.equal((await emulated.sample.open(onVolume(systemVolume().name, 'back'))).verdict, 'deny');
        // Another instance attached where the default one is detached runs the callbacks too.
        await fltport.detach(emulated.sampleName, 'C:');
        await fltport.attach(emulated.sampleName, 'C:', { altitude: '370036.5', instanceName: 'fltport extra' });
        try {
          assert.equal((await emulated.sample.open(onVolume(systemVolume().name, 'extra'))).verdict, 'deny');
        } finally {
          await fltport.detach(emulated.sampleName, 'C:', 'fltport extra');
          await fltport.attach(emulated.sampleName, 'C:');
        }
      } finally {
        await agentPort.close();
        await agent;
      }
    });

    it('attach() and detach() fail for an unknown filter or volume', async () => {
      await assert.rejects(fltport.attach('fltport-no-such-filter', 'C:'), isWinError('ERROR_FLT_FILTER_NOT_FOUND', 'FilterAttach'));
      await assert.rejects(fltport.attach(emulated.sampleName, '\\Device\\NoSuchVolume'), isWinError('ERROR_FLT_VOLUME_NOT_FOUND', 'FilterAttach'));
      await assert.rejects(fltport.detach('fltport-no-such-filter', 'C:'), isWinError('ERROR_FLT_FILTER_NOT_FOUND', 'FilterDetach'));
      await assert.rejects(fltport.detach(emulated.sampleName, 'C:', 'fltport never attached'), isWinError('ERROR_FLT_INSTANCE_NOT_FOUND', 'FilterDetach'));
    });
  });

  describe('injected opens', () => {
    it('survive their injector\'s death while they wait for an agent that does not answer (drivers stay alive)', async () => {
      // An injected open whose requester dies is cancelled while the sample waits for the agent;
      // closing the agent at the same moment completes it: the cancel can then name an IRP
      // completed already (Wine 8's race, limbo.c). The root hook checks that the drivers live.
      for (let round = 0; round < 5; round += 1) {
        const agentPort = await fltport.FilterPort.connect(protocol.PORT_NAME, { context: protocol.connectContext({ agent: true }) });
        const control = await spawnTool(CONTROL_EXE, ['pipe', 'pipe', 'ignore']);
        const exited = once(control, 'exit');
        try {
          const asked = agentPort.receive(); // never answered
          const lines = readline.createInterface({ input: control.stdout });
          const [ready] = await Promise.race([
            once(lines, 'line'),
            exited.then(([code]) => {
              throw new Error(`fltmgr-control exited (${code}) before it was ready`);
            }),
          ]);
          assert.match(ready, /^ready\b/);
          const watched = `\\Device\\HarddiskVolume7\\fltport-inject\\${round}${protocol.DEFAULT_SUFFIX}`;
          control.stdin.write(`create 1 4242 ${0x120089} ${FILE_OPEN_OPTIONS} ${watched}\n`);
          await asked;
        } finally {
          control.kill();
          await agentPort.close();
          await exited;
        }
      }
      assert.equal((await emulated.sample.open(`\\Device\\HarddiskVolume7\\fltport-inject\\after.txt`)).verdict, 'allow');
    });
  });

  describe('load and unload', () => {
    it('unloadFilter() stops the filter\'s service and loadFilter() starts it again', async () => {
      await fltport.unloadFilter(emulated.wdkName);
      try {
        assert.equal(await filterNamed(emulated.wdkName), undefined);
        assert.equal(drivers.serviceStatus(emulated.wdkName).state, 'STOPPED');
        await assert.rejects(fltport.getFilterInfo(emulated.wdkName), isWinError('ERROR_FLT_FILTER_NOT_FOUND'));
        await assert.rejects(fltport.unloadFilter(emulated.wdkName), isWinError('ERROR_FLT_FILTER_NOT_FOUND', 'FilterUnload'));
      } finally {
        await fltport.loadFilter(emulated.wdkName);
      }
      const wdk = await filterNamed(emulated.wdkName);
      assert.equal(wdk.altitude, '380000');
      assert.equal(wdk.instances, volumes.length);
      await assert.rejects(fltport.loadFilter(emulated.wdkName), isWinError('ERROR_SERVICE_ALREADY_RUNNING', 'FilterLoad'));
    });

    it('loadFilter() of a service that does not exist fails with ERROR_FILE_NOT_FOUND', async () => {
      await assert.rejects(fltport.loadFilter('fltport-no-such-service'), isWinError('ERROR_FILE_NOT_FOUND', 'FilterLoad'));
    });
  });
});
