'use strict';
// The sample driver end to end: fltport agents against fltportsample.sys on the emulated filter
// manager (default) or the driver loaded on Windows (FLTPORT_SAMPLE_TARGET=driver), see targets.js.
// The driver runs for the whole suite, so counters are checked as differences; what became of an
// open inside the driver shows in its counters (GET_STATS), as it would to any agent.
const assert = require('node:assert/strict');
const koffi = require('koffi');
const { FilterPort, WinError } = require('fltport');
const protocol = require('../../driver-sample/protocol');
const { selectTarget, protocolLayoutOfC } = require('./targets');

const { constants, connectContext, command, ping, getStats, setConfig, decodeMessage, replyVerdict } = protocol;

const HRESULT = {
  INVALIDARG: 0x80070057, // STATUS_INVALID_PARAMETER
  REVISION_MISMATCH: 0x8007051a, // STATUS_REVISION_MISMATCH
  INSUFFICIENT_BUFFER: 0x8007007a, // STATUS_BUFFER_TOO_SMALL
  INVALID_FUNCTION: 0x80070001, // STATUS_INVALID_DEVICE_REQUEST
  CONNECTION_COUNT_LIMIT: 0x800704d6,
  NO_WAITER_FOR_REPLY: 0x801f0020,
};
// Parameters.Create.Options of injected opens: the disposition in the high byte, options below.
const CREATE = { FILE_OPEN: 0x01000000, FILE_DIRECTORY_FILE: 0x1, FILE_OPEN_BY_FILE_ID: 0x2000 };
const DEFAULT_CONFIG = { enabled: true, replyTimeoutMs: constants.FS_DEFAULT_REPLY_TIMEOUT_MS, suffix: protocol.DEFAULT_SUFFIX };
const delay = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const isClosed = (error) => error?.code === 'ERR_FLTPORT_CLOSED';

const target = selectTarget();

describe(`fltport sample driver protocol (${target.name})`, function () {
  const opened = [];
  let fileCounter = 0;

  const connect = async ({ agent = false } = {}) => {
    const port = await FilterPort.connect(target.portName, { context: connectContext({ agent }) });
    opened.push(port);
    return port;
  };

  /** Stats read through a short-lived command connection. */
  const stats = async () => {
    const port = await FilterPort.connect(target.portName, { context: connectContext() });
    try {
      return await getStats(port);
    } finally {
      await port.close();
    }
  };

  const delta = (before, after) => Object.fromEntries(Object.keys(after).map((key) => [key, after[key] - before[key]]));

  /** Waits until the driver has seen every earlier connection go (DisconnectNotify is asynchronous). */
  const settled = async () => {
    for (let attempt = 0; attempt < 100; attempt += 1) {
      const now = await stats();
      if (now.Agents === 0 && now.Connections === 1) return;
      await delay(50);
    }
    throw new Error('earlier connections did not go away');
  };

  /**
   * Reads messages until the port closes; `answer` decides each open (default: deny names that
   * contain "blocked"). Resolves `done` with what was seen.
   */
  const runAgent = (port, answer = (open, message) => replyVerdict(message, open.sequence, !open.path.includes('blocked'))) => {
    const agent = { opens: [], events: [], replyErrors: [] };
    agent.done = (async () => {
      try {
        for await (const message of port.messages({ bufferBytes: constants.FS_MAX_MESSAGE_BYTES, pending: 4 })) {
          const decoded = decodeMessage(message);
          if (decoded.kind !== 'open') {
            agent.events.push({ ...decoded, expectsReply: message.expectsReply });
            continue;
          }
          agent.opens.push({ ...decoded, replyBytes: message.replyBytes });
          Promise.resolve(answer(decoded, message)).catch((error) => {
            if (!isClosed(error)) agent.replyErrors.push(error);
          });
        }
      } catch (error) {
        if (!isClosed(error)) throw error;
      }
      return agent;
    })();
    return agent;
  };

  /** A fresh watched (or not) file name; on the driver target, create it before any agent connects. */
  const file = (label, suffix = protocol.DEFAULT_SUFFIX) => target.pathFor(`${label}-${++fileCounter}${suffix}`);

  before(async function () {
    this.timeout(120000);
    await target.start();
  });
  after(async () => {
    await target.stop();
  });
  afterEach(async () => {
    await Promise.allSettled(opened.splice(0).map((port) => port.close()));
    await settled();
  });

  it('protocol.js has the C layout: sizes, offsets and constants', async function () {
    const layout = await protocolLayoutOfC();
    if (layout === undefined) {
      if (target.name === 'driver') this.skip(); // the WDK built the driver; no layout tool here
      throw new Error('fltport-sample-layout.exe is missing: build the emulator');
    }
    for (const [name, { size, offsets }] of Object.entries(layout.structs)) {
      const type = protocol.structs[name];
      assert.ok(type, `protocol.js lacks ${name}`);
      assert.equal(koffi.sizeof(type), size, `sizeof(${name})`);
      for (const [field, offset] of Object.entries(offsets)) assert.equal(koffi.offsetof(type, field), offset, `${name}.${field}`);
      assert.deepEqual(Object.keys(koffi.introspect(type).members), Object.keys(offsets), `${name}'s fields`);
    }
    assert.deepEqual(Object.keys(protocol.structs).sort(), Object.keys(layout.structs).sort());
    assert.deepEqual(constants, layout.constants);
  });

  describe('connecting', () => {
    it('accepts a good context (agent and command connections)', async () => {
      const before = await stats();
      await connect({ agent: true });
      const control = await connect();
      const now = await getStats(control);
      assert.equal(now.Connects - before.Connects, 2);
      assert.equal(now.Agents, 1);
      assert.ok(now.Connections >= 2); // stats()'s own connection may still be on its way out
    });

    it('refuses a wrong magic, a wrong version and a missing or short context, and counts them', async () => {
      const before = await stats();
      const refuses = async (options, hresult) => {
        await assert.rejects(FilterPort.connect(target.portName, options), (error) => {
          assert.ok(error instanceof WinError, String(error));
          assert.equal(error.hresult, hresult, error.message);
          return true;
        });
      };
      await refuses({ context: connectContext({ magic: 0x12345678 }) }, HRESULT.INVALIDARG);
      await refuses({ context: connectContext({ version: constants.FS_PROTOCOL_VERSION + 1 }) }, HRESULT.REVISION_MISMATCH);
      await refuses({}, HRESULT.INVALIDARG);
      await refuses({ context: connectContext().subarray(0, 8) }, HRESULT.INVALIDARG);
      const unknownFlag = connectContext();
      unknownFlag.writeUInt32LE(0x80, 8);
      await refuses({ context: unknownFlag }, HRESULT.INVALIDARG);
      assert.equal((await stats()).Refused - before.Refused, 5);
    });

    it(`admits ${constants.FS_MAX_CONNECTIONS} connections and refuses a fifth with ERROR_CONNECTION_COUNT_LIMIT`, async () => {
      // A command connection of an earlier test (settled()'s stats()) may hold its place a little
      // longer than its close() (fltmgr ends the message call on its own worker): a moment's retry.
      const connectAgent = async () => {
        for (let attempt = 0; ; attempt += 1) {
          const port = await connect({ agent: true }).catch((error) => error);
          if (port instanceof FilterPort) return port;
          if (port.code !== 'ERROR_CONNECTION_COUNT_LIMIT' || attempt === 100) throw port;
          await delay(50);
        }
      };
      const agents = [];
      for (let i = 0; i < constants.FS_MAX_CONNECTIONS; i += 1) agents.push(await connectAgent());
      await assert.rejects(connect({ agent: true }), { code: 'ERROR_CONNECTION_COUNT_LIMIT', hresult: HRESULT.CONNECTION_COUNT_LIMIT });
      await agents[0].close();
      let fifth;
      for (let attempt = 0; attempt < 100 && fifth === undefined; attempt += 1) {
        fifth = await connect({ agent: true }).catch(() => delay(50).then(() => undefined));
      }
      assert.ok(fifth instanceof FilterPort, 'a place frees up once a connection closes');
    });
  });

  describe('commands', () => {
    for (const bytes of [0, 1, constants.FS_MAX_PING_BYTES]) {
      it(`PING echoes ${bytes} bytes`, async () => {
        const port = await connect();
        const payload = Buffer.from(Array.from({ length: bytes }, (_, i) => (i * 7 + 3) & 0xff));
        assert.deepEqual(await ping(port, payload), payload);
      });
    }

    it('refuses what it cannot trust: oversized PING, small output, inconsistent header, unknown command', async () => {
      const port = await connect();
      const tooBig = Buffer.alloc(constants.FS_MAX_PING_BYTES + 1);
      await assert.rejects(port.send(command(constants.FS_COMMAND_PING, tooBig), { replyBytes: tooBig.length }), { hresult: HRESULT.INVALIDARG });
      await assert.rejects(port.send(command(constants.FS_COMMAND_PING, Buffer.alloc(16)), { replyBytes: 15 }), { hresult: HRESULT.INSUFFICIENT_BUFFER });
      const lying = command(constants.FS_COMMAND_PING, Buffer.alloc(8));
      lying.writeUInt32LE(64, 4);
      await assert.rejects(port.send(lying, { replyBytes: 64 }), { hresult: HRESULT.INVALIDARG });
      await assert.rejects(port.send(Buffer.alloc(4), { replyBytes: 8 }), { hresult: HRESULT.INVALIDARG });
      await assert.rejects(port.send(command(99), { replyBytes: 8 }), { hresult: HRESULT.INVALID_FUNCTION });
      await assert.rejects(port.send(command(constants.FS_COMMAND_GET_STATS), { replyBytes: 64 }), { hresult: HRESULT.INSUFFICIENT_BUFFER });
    });

    it('SET_CONFIG returns the previous configuration, applies the new one and tells the agents (fire-and-forget)', async () => {
      const otherWatched = file('other', '.other-suffix');
      const nowUnwatched = file('default');
      const agentPort = await connect({ agent: true });
      const agent = runAgent(agentPort);
      const control = await connect();
      const before = await getStats(control);
      const previous = await setConfig(control, { ...DEFAULT_CONFIG, suffix: '.OTHER-suffix' });
      try {
        assert.deepEqual(previous, DEFAULT_CONFIG);
        assert.equal((await target.open(otherWatched)).verdict, 'allow');
        assert.equal((await target.open(nowUnwatched)).verdict, 'allow');
        assert.deepEqual(await setConfig(control, { ...DEFAULT_CONFIG, enabled: false }), { ...DEFAULT_CONFIG, suffix: '.OTHER-suffix' });
        assert.equal((await target.open(file('blocked-disabled'))).verdict, 'allow');
      } finally {
        await setConfig(control, DEFAULT_CONFIG);
      }
      const counted = delta(before, await getStats(control));
      assert.equal(agent.opens.length, 1, 'only the open matching the new suffix was sent');
      assert.ok(agent.opens[0].path.endsWith('.other-suffix'));
      assert.equal(counted.OpensSeen, 1);
      assert.equal(counted.EventsSent, 3);
      // Delivered means the agent's read completed; its loop sees the message a little later.
      for (let attempt = 0; attempt < 200 && agent.events.length < 3; attempt += 1) await delay(50);
      assert.deepEqual(
        agent.events.map((event) => [event.kind, event.expectsReply, event.config.suffix, event.config.enabled]),
        [
          ['config-changed', false, '.OTHER-suffix', true],
          ['config-changed', false, protocol.DEFAULT_SUFFIX, false],
          ['config-changed', false, protocol.DEFAULT_SUFFIX, true],
        ],
      );
      assert.equal(agent.events[1].changeCount, agent.events[0].changeCount + 1);
    });

    it('SET_CONFIG refuses invalid configurations and keeps the current one', async () => {
      const port = await connect();
      const invalid = [
        { ...DEFAULT_CONFIG, replyTimeoutMs: 0 },
        { ...DEFAULT_CONFIG, replyTimeoutMs: constants.FS_MAX_REPLY_TIMEOUT_MS + 1 },
        { ...DEFAULT_CONFIG, suffix: '' },
      ];
      for (const config of invalid) {
        await assert.rejects(setConfig(port, config), { hresult: HRESULT.INVALIDARG }, JSON.stringify(config));
      }
      const oddLength = protocol.encodeConfig(DEFAULT_CONFIG);
      oddLength.writeUInt32LE(3, 8);
      await assert.rejects(port.send(command(constants.FS_COMMAND_SET_CONFIG, oddLength)), { hresult: HRESULT.INVALIDARG });
      const reserved = protocol.encodeConfig(DEFAULT_CONFIG);
      reserved.writeUInt32LE(1, 12);
      await assert.rejects(port.send(command(constants.FS_COMMAND_SET_CONFIG, reserved)), { hresult: HRESULT.INVALIDARG });
      assert.deepEqual(await setConfig(port, DEFAULT_CONFIG), DEFAULT_CONFIG);
    });
  });

  describe('opens', () => {
    it('allows a watched open without a notification while no agent is connected', async () => {
      const name = file('lonely');
      const before = await stats();
      const result = await target.open(name);
      assert.equal(result.verdict, 'allow');
      assert.equal((await stats()).OpensSeen - before.OpensSeen, 0);
    });

    it('allows a watched open that the agent allows, and tells it the pid, access, path and sequence', async () => {
      const name = file('report');
      const agent = runAgent(await connect({ agent: true }));
      const before = await stats();
      const result = await target.open(name, { access: 0x120089 });
      assert.equal(result.verdict, 'allow');
      assert.equal(agent.opens.length, 1);
      const [open] = agent.opens;
      assert.ok(open.path.toLowerCase().endsWith(name.split('\\').pop().toLowerCase()), open.path);
      assert.equal(open.processId, result.pid);
      assert.equal(open.truncated, false);
      assert.equal(open.replyBytes, 16, 'the driver waits for exactly an FS_OPEN_REPLY');
      if (result.access !== undefined) assert.equal(open.desiredAccess, result.access); // the access an injected open asked for
      assert.ok(open.sequence > 0);
      const counted = delta(before, await stats());
      assert.equal(counted.OpensSeen, 1);
      assert.equal(counted.NotificationsSent, 1);
      assert.equal(counted.Replies, 1);
      assert.equal(counted.Denials, 0);
    });

    it('denies a watched open that the agent denies (STATUS_ACCESS_DENIED)', async () => {
      const name = file('blocked');
      runAgent(await connect({ agent: true }));
      const before = await stats();
      const result = await target.open(name);
      assert.equal(result.verdict, 'deny');
      const counted = delta(before, await stats());
      assert.equal(counted.Denials, 1);
      assert.equal(counted.Replies, 1);
    });

    it('watches the streams of a watched file: the suffix ends the file name, not the stream name', async () => {
      const names = [file('blocked-stream', `${protocol.DEFAULT_SUFFIX}:data`), file('blocked-default-stream', `${protocol.DEFAULT_SUFFIX}::$DATA`)];
      const agent = runAgent(await connect({ agent: true }));
      for (const name of names) assert.equal((await target.open(name)).verdict, 'deny', name);
      assert.deepEqual(
        agent.opens.map((open) => open.path.slice(open.path.lastIndexOf('.'))),
        [`${protocol.DEFAULT_SUFFIX}:data`, `${protocol.DEFAULT_SUFFIX}::$DATA`],
      );
    });

    it('asks about a watched file opened by an 8.3 short name (generated, or set by an administrator), by file id, or relative to itself', async function () {
      if (!target.injectsOpens) this.skip(); // needs opens by chosen short names and file ids
      const agent = runAgent(await connect({ agent: true }));
      const opens = [
        { name: target.pathFor('BLOCKE~1.FLT'), normalizedName: file('blocked-generated-short') },
        { name: target.pathFor('SECRET.TXT'), normalizedName: file('blocked-assigned-short') },
        { name: target.pathFor('0123456789abcdef'), normalizedName: file('blocked-by-id'), options: CREATE.FILE_OPEN | CREATE.FILE_OPEN_BY_FILE_ID },
        { name: ':data', normalizedName: file('blocked-relative', `${protocol.DEFAULT_SUFFIX}:data`) }, // a stream, relative to the file's handle
      ];
      for (const open of opens) assert.equal((await target.open(open.name, open)).verdict, 'deny', open.normalizedName);
      assert.deepEqual(
        agent.opens.map((open) => open.path),
        opens.map((open) => open.normalizedName),
        'the agent is told the normalized name',
      );
    });

    it('decides on the opened name first: a long name without the suffix is never looked up', async function () {
      if (!target.injectsOpens) this.skip();
      const agent = runAgent(await connect({ agent: true }));
      const before = await stats();
      // The filter manager would report a watched normalized name; the driver must not ask for it.
      const result = await target.open(target.pathFor('quarterly-report.docx'), { normalizedName: file('blocked-never-asked') });
      assert.equal(result.verdict, 'allow');
      assert.equal(agent.opens.length, 0);
      assert.equal((await stats()).OpensSeen - before.OpensSeen, 0);
    });

    it('leaves directory opens alone', async function () {
      if (!target.injectsOpens) this.skip();
      const agent = runAgent(await connect({ agent: true }));
      const result = await target.open(file('blocked-directory'), { options: CREATE.FILE_OPEN | CREATE.FILE_DIRECTORY_FILE });
      assert.equal(result.verdict, 'allow');
      assert.equal(agent.opens.length, 0);
    });

    it('leaves names without the suffix alone', async () => {
      const name = file('plain', '.txt');
      const agent = runAgent(await connect({ agent: true }));
      const before = await stats();
      assert.equal((await target.open(name)).verdict, 'allow');
      assert.equal(agent.opens.length, 0);
      assert.equal((await stats()).OpensSeen - before.OpensSeen, 0);
    });

    it("skips the agent's own process, which could deadlock waiting on itself", async () => {
      const name = file('blocked-self');
      const agent = runAgent(await connect({ agent: true }));
      const before = await stats();
      const result = await target.open(name, { self: true });
      assert.equal(result.verdict, 'allow');
      assert.equal(agent.opens.length, 0);
      const counted = delta(before, await stats());
      assert.equal(counted.SelfSkipped, 1);
      assert.equal(counted.NotificationsSent, 0);
    });

    it('truncates and flags a path longer than the notification holds', async function () {
      if (!target.injectsOpens) this.skip(); // Windows would need a 1024-character path on disk
      const agent = runAgent(await connect({ agent: true }));
      const long = `\\Device\\HarddiskVolume7\\${'d'.repeat(1100)}\\x${protocol.DEFAULT_SUFFIX}`;
      const result = await target.open(long);
      assert.equal(result.verdict, 'allow');
      assert.equal(agent.opens[0].truncated, true);
      assert.equal(agent.opens[0].path, long.slice(0, constants.FS_MAX_PATH_CHARS));
    });

    it('a reply after the timeout: counted, the open allowed, the agent gets ERROR_FLT_NO_WAITER_FOR_REPLY', async () => {
      const name = file('blocked-late');
      const control = await connect();
      const lateReplies = [];
      // The agent answers only once the open has completed: an open that waited for its reply
      // would never complete.
      let openCompleted;
      const completed = new Promise((resolve) => (openCompleted = resolve));
      const agent = runAgent(await connect({ agent: true }), async (open, message) => {
        await completed;
        lateReplies.push(replyVerdict(message, open.sequence, false).then(() => 'replied', (error) => error));
      });
      await setConfig(control, { ...DEFAULT_CONFIG, replyTimeoutMs: 300 });
      try {
        const before = await getStats(control);
        const result = await target.open(name);
        openCompleted();
        assert.equal(result.verdict, 'allow');
        assert.equal(delta(before, await getStats(control)).Timeouts, 1);
        for (let waited = 0; lateReplies.length === 0; waited += 50) {
          assert.ok(waited < 60000, 'the agent never got the message to reply to');
          await delay(50);
        }
        const error = await lateReplies[0];
        assert.ok(error instanceof WinError, String(error));
        assert.equal(error.code, 'ERROR_FLT_NO_WAITER_FOR_REPLY');
        assert.equal(error.hresult, HRESULT.NO_WAITER_FOR_REPLY);
        assert.equal(agent.opens.length, 1);
      } finally {
        await setConfig(control, DEFAULT_CONFIG);
      }
    });

    it('waits as long as SET_CONFIG says: a reply later than the default timeout still decides the open', async function () {
      this.timeout(180000);
      const name = file('blocked-patient');
      const control = await connect();
      // Later than the default timeout, well within the configured one; a driver that kept the
      // default would time out first and allow the open.
      const replyAfterMs = constants.FS_DEFAULT_REPLY_TIMEOUT_MS + 1000;
      runAgent(await connect({ agent: true }), async (open, message) => {
        await delay(replyAfterMs);
        return replyVerdict(message, open.sequence, false);
      });
      await setConfig(control, { ...DEFAULT_CONFIG, replyTimeoutMs: constants.FS_MAX_REPLY_TIMEOUT_MS });
      try {
        const before = await getStats(control);
        const result = await target.open(name);
        assert.equal(result.verdict, 'deny');
        assert.equal(delta(before, await getStats(control)).Timeouts, 0);
      } finally {
        await setConfig(control, DEFAULT_CONFIG);
      }
    });

    it('a malformed reply (wrong sequence, short, unknown verdict) is counted and the open allowed', async () => {
      const names = [file('blocked-wrong-sequence'), file('blocked-short'), file('blocked-verdict')];
      const { FS_OPEN_REPLY } = protocol.structs;
      runAgent(await connect({ agent: true }), (open, message) => {
        if (open.path.includes('wrong-sequence')) return message.reply({ Sequence: open.sequence + 1000, Verdict: constants.FS_VERDICT_DENY, Reserved: 0 }, { type: FS_OPEN_REPLY });
        if (open.path.includes('short')) return message.reply(Buffer.alloc(8));
        return message.reply({ Sequence: open.sequence, Verdict: 77, Reserved: 0 }, { type: FS_OPEN_REPLY });
      });
      const before = await stats();
      for (const name of names) {
        const result = await target.open(name);
        assert.equal(result.verdict, 'allow', name);
      }
      const counted = delta(before, await stats());
      assert.equal(counted.MalformedReplies, 3);
      assert.equal(counted.Denials, 0);
    });

    it('two agents share the opens', async () => {
      const names = Array.from({ length: 8 }, (_, i) => file(`shared-${i}`));
      const first = runAgent(await connect({ agent: true }));
      const second = runAgent(await connect({ agent: true }));
      const results = await Promise.all(names.map((name) => target.open(name)));
      assert.ok(results.every((result) => result.verdict === 'allow'));
      assert.equal(first.opens.length + second.opens.length, names.length);
      assert.ok(first.opens.length > 0 && second.opens.length > 0, `${first.opens.length} / ${second.opens.length}`);
    });

    it('the agent disconnecting mid-stream: every open completes, allowed, and the driver counts it', async () => {
      const names = Array.from({ length: 24 }, (_, i) => file(`stream-${i}`));
      const port = await connect({ agent: true });
      let answered = 0;
      // Answers five opens, then leaves with the others in flight or queued.
      runAgent(port, async (open, message) => {
        answered += 1;
        if (answered <= 5) return replyVerdict(message, open.sequence, true);
        if (answered === 6) await port.close();
        return undefined;
      });
      const before = await stats();
      const results = await Promise.all(names.map((name) => target.open(name)));
      assert.ok(results.every((result) => result.verdict === 'allow'));
      await settled();
      const counted = delta(before, await stats());
      assert.ok(counted.Disconnects >= 1);
      assert.equal(counted.Timeouts, 0);
      assert.ok(counted.SendFailures >= 1, 'the open the agent left without answering failed open');
      assert.equal(counted.NotificationsSent, counted.Replies + counted.Timeouts + counted.MalformedReplies + counted.SendFailures);
    });
  });

  // wdkstyle.sys (emulator/test/wdkstyle, Microsoft-style code) fails opens of "wdkstyle-refuse*"
  // files with STATUS_SHARING_VIOLATION; the sample's agent here denies names with "blocked".
  describe('beside another minifilter (emulated filter manager)', () => {
    const STATUS = { SUCCESS: 0, ACCESS_DENIED: 0xc0000022, SHARING_VIOLATION: 0xc0000043 };

    beforeEach(function () {
      if (!target.injectsOpens) this.skip(); // loads a second test driver beside the sample
    });

    const withFilterAt = async (altitude, body) => {
      const unload = await target.loadFilter('wdkstyle.sys', altitude);
      try {
        await body();
      } finally {
        await unload();
      }
    };

    it('calls the higher altitude first: a filter above that completes the open keeps it from the sample', async () => {
      const agent = runAgent(await connect({ agent: true }));
      await withFilterAt('380000', async () => {
        assert.equal((await target.open(file('wdkstyle-refuse-blocked'))).status, STATUS.SHARING_VIOLATION);
        assert.equal((await target.open(file('other-blocked'))).status, STATUS.ACCESS_DENIED);
      });
      assert.equal(agent.opens.length, 1, 'the sample saw only the open the filter above let through');
    });

    it("calls a lower altitude after the sample: the agent's denial comes first, an allowed open goes on down", async () => {
      const agent = runAgent(await connect({ agent: true }));
      await withFilterAt('360000', async () => {
        assert.equal((await target.open(file('wdkstyle-refuse-blocked'))).status, STATUS.ACCESS_DENIED);
        assert.equal((await target.open(file('wdkstyle-refuse-allowed'))).status, STATUS.SHARING_VIOLATION);
        assert.equal((await target.open(file('allowed'))).status, STATUS.SUCCESS);
      });
      assert.equal(agent.opens.length, 3);
    });

    it('refuses a minifilter whose service has no Instances key (FltRegisterFilter fails, as on Windows)', async () => {
      await assert.rejects(target.loadFilter('wdkstyle.sys', undefined), (error) => {
        assert.match(error.message, /StartServiceW/);
        return true;
      });
    });

    it("runs Microsoft-style code: wdkstyle.sys's port answers with the bytes reversed", async () => {
      await withFilterAt('360000', async () => {
        const port = await FilterPort.connect('\\FltportWdkStyle');
        try {
          assert.equal(Buffer.from(await port.send(Buffer.from('fltport'), { replyBytes: 64 })).toString(), 'troptlf');
        } finally {
          await port.close();
        }
      });
    });
  });
});
