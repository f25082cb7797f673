'use strict';
// The fltport command's filter-manager commands and `listen`, end to end on the emulated filter
// manager: fltportsample.sys (the sample, at 370035, with its port \FltportSample and opens
// injected through fltmgr-control) and wdkstyle.sys (at 380000). Output and exit codes.
const assert = require('node:assert/strict');
const fltport = require('fltport');
const protocol = require('../../driver-sample/protocol');
const { useFilters } = require('./filters');
const { fltport: run, killRunning, noStack } = require('../cli/run-cli');

const delay = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

describe('fltport command on the emulated filter manager', function () {
  const emulated = useFilters();
  afterEach(killRunning);

  /** The table's line that starts with `first` (columns split on two spaces or more). */
  const row = (stdout, first) => stdout.split('\n').map((line) => line.split(/ {2,}/)).find((cells) => cells[0] === first);

  it('filters: a table like fltmc\'s, and --json', async () => {
    const volumes = await fltport.listVolumes();
    const table = await run('filters');
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /^Filter Name +Num Instances +Altitude +Frame\n-+ +-+ +-+ +-+\n/);
    assert.deepEqual(row(table.stdout, emulated.sampleName), [emulated.sampleName, String(volumes.length), '370035', '0']);
    assert.deepEqual(row(table.stdout, emulated.wdkName), [emulated.wdkName, String(volumes.length), '380000', '0']);
    const json = await run('filters', '--json');
    assert.equal(json.code, 0, json.stderr);
    assert.deepEqual(JSON.parse(json.stdout), await fltport.listFilters());
  });

  it('volumes and instances: tables and --json', async () => {
    const volumes = await run('volumes');
    assert.equal(volumes.code, 0, volumes.stderr);
    assert.match(volumes.stdout, /^Dos Name +Volume Name +FileSystem +Status\n/);
    assert.deepEqual(row(volumes.stdout, 'C:'), ['C:', '\\Device\\HarddiskVolume1', 'NTFS']);

    const instances = await run('instances', emulated.sampleName);
    assert.equal(instances.code, 0, instances.stderr);
    assert.match(instances.stdout, /^Filter +Volume Name +Altitude +Instance Name +Frame +SprtFtrs +VlStatus\n/);
    assert.deepEqual(row(instances.stdout, emulated.sampleName).slice(0, 6), [emulated.sampleName, '\\Device\\HarddiskVolume1', '370035', `${emulated.sampleName} Instance`, '0', '0x00000000']);
    const all = JSON.parse((await run('instances', '--json')).stdout);
    assert.deepEqual(all, await fltport.listInstances());

    const missing = await run('instances', 'fltport-no-such-filter');
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /^fltport: FilterInstanceFindFirst failed with ERROR_FLT_FILTER_NOT_FOUND \(0x801F0013\)/);
    noStack(missing.stderr);
  });

  it('detach and attach, with --instance and --altitude; a collision exits 1 naming the call', async () => {
    const detached = await run('detach', emulated.sampleName, 'C:');
    assert.equal(detached.code, 0, detached.stderr);
    assert.equal(detached.stdout, `Detached ${emulated.sampleName} from C:\n`);
    const attached = await run('attach', emulated.sampleName, 'C:');
    assert.equal(attached.code, 0, attached.stderr);
    assert.equal(attached.stdout, `Attached ${emulated.sampleName} to C: as instance "${emulated.sampleName} Instance"\n`);

    const extra = await run('attach', emulated.sampleName, 'C:', '--altitude', '370036', '--instance', 'cli extra', '--json');
    assert.equal(extra.code, 0, extra.stderr);
    assert.deepEqual(JSON.parse(extra.stdout), { filter: emulated.sampleName, volume: 'C:', instanceName: 'cli extra' });
    const collision = await run('attach', emulated.sampleName, 'C:', '--altitude', '380000', '--instance', 'cli third');
    assert.equal(collision.code, 1);
    assert.match(collision.stderr, /^fltport: FilterAttachAtAltitude failed with ERROR_FLT_INSTANCE_ALTITUDE_COLLISION \(0x801F0011\)/);
    const gone = await run('detach', emulated.sampleName, 'C:', '--instance', 'cli extra');
    assert.equal(gone.code, 0, gone.stderr);
    assert.equal(gone.stdout, `Detached ${emulated.sampleName} instance "cli extra" from C:\n`);
  });

  it('unload and load a filter; a filter or service that does not exist exits 1', async () => {
    const unloaded = await run('unload', emulated.wdkName);
    assert.equal(unloaded.code, 0, unloaded.stderr);
    assert.equal(unloaded.stdout, `Unloaded ${emulated.wdkName}\n`);
    const loaded = await run('load', emulated.wdkName, '--json');
    assert.equal(loaded.code, 0, loaded.stderr);
    assert.deepEqual(JSON.parse(loaded.stdout), { filter: emulated.wdkName, loaded: true });
    assert.equal((await fltport.getFilterInfo(emulated.wdkName)).altitude, '380000');

    const notLoaded = await run('unload', 'fltport-no-such-filter');
    assert.equal(notLoaded.code, 1);
    assert.match(notLoaded.stderr, /^fltport: FilterUnload failed with ERROR_FLT_FILTER_NOT_FOUND/);
    const noService = await run('load', 'fltport-no-such-service');
    assert.equal(noService.code, 1);
    assert.match(noService.stderr, /^fltport: FilterLoad failed with ERROR_FILE_NOT_FOUND \(0x80070002\)/);
    noStack(noService.stderr);
  });

  describe('listen against the sample', () => {
    const agentContext = protocol.connectContext({ agent: true }).toString('hex');
    const file = (name) => `\\Device\\HarddiskVolume7\\fltport-cli\\${name}${protocol.DEFAULT_SUFFIX}`;

    /** Resolves once the sample has `count` agent connections; fails at once if `listening` ends first. */
    async function agents(count, listening) {
      let exited;
      listening?.then(
        (result) => (exited = result),
        (error) => (exited = { spawnFailed: error.message }),
      );
      for (let attempt = 0; attempt < 400; attempt += 1) {
        if (exited !== undefined) throw new Error(`listen exited before the sample had ${count} agents: ${JSON.stringify(exited)}`);
        const port = await fltport.FilterPort.connect(protocol.PORT_NAME, { context: protocol.connectContext() });
        const stats = await protocol.getStats(port).finally(() => port.close());
        if (stats.Agents === count) return;
        await delay(50);
      }
      throw new Error(`the sample never had ${count} agents`);
    }

    it('prints each message as JSON, replies as told, stops after --count with a summary', async () => {
      await agents(0);
      const listening = run('listen', protocol.PORT_NAME, '--context', agentContext, '--count', '2', '--reply-bytes', '8', '--json', '--pending', '2');
      await agents(1, listening);
      const opens = [await emulated.sample.open(file('listened')), await emulated.sample.open(file('listened'))];
      const { code, stdout, stderr } = await listening;
      assert.equal(code, 0, stderr);
      const lines = stdout.trim().split('\n').map((line) => JSON.parse(line));
      assert.equal(lines.length, 3, stdout);
      for (const message of lines.slice(0, 2)) {
        assert.match(message.id, /^\d+$/);
        assert.equal(message.expectsReply, true);
        assert.ok(Buffer.from(message.hex, 'hex').includes(Buffer.from('listened', 'utf16le')), 'the path is in the message');
      }
      assert.deepEqual(lines[2].summary, { received: 2, replied: 2, lateReplies: 0, unsentReplies: 0, failed: 0 });
      for (const open of opens) assert.ok(['allow', 'deny'].includes(open.verdict));
    });

    it('prints a line per message with hex and UTF-16 previews', async () => {
      await agents(0);
      const listening = run('listen', protocol.PORT_NAME, '--context', agentContext, '--count', '1');
      await agents(1, listening);
      await emulated.sample.open(file('shown'));
      const { code, stdout, stderr } = await listening;
      assert.equal(code, 0, stderr);
      assert.match(stdout, /^#\d+ \d+ bytes, reply up to \d+\n  hex:    ([0-9a-f]{2} )+/);
      assert.match(stdout, /\n  utf-16: .*\n1 messages, 1 replies, 0 late, 0 unsent, 0 failed\n$/);
    });
  });
});
