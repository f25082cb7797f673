'use strict';
// The fltport command end to end: Windows node.exe runs dist/lib/cli/main.js against the
// emulator's test kernel (probe, send) and the sample host (listen); output and exit codes.
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { FilterPort } = require('fltport');
const { startKernel, command, OP } = require('../../emulator/test-kernel/test-kernel.js');
const protocol = require('../../driver-sample/protocol');
const { selectTarget } = require('../integration/targets');
const packageJson = require('../../package.json');

const cli = path.resolve(__dirname, '..', '..', packageJson.bin.fltport);
const delay = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const running = new Set();

/** Runs fltport with `args`; resolves with { code, stdout, stderr }. */
function fltport(...args) {
  const child = spawn(process.execPath, [cli, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(child);
  child.on('exit', () => running.delete(child));
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (text) => (stdout += text));
  child.stderr.setEncoding('utf8').on('data', (text) => (stderr += text));
  const done = new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
  return Object.assign(done, { child });
}

// A test that failed with fltport still running (listen) ends it.
afterEach(() => {
  for (const child of running) child.kill();
});

const noStack = (text) => assert.doesNotMatch(text, /^\s+at /m, 'a stack trace was printed');

describe('fltport command against the test kernel', () => {
  let host;
  beforeEach(async () => {
    host = await startKernel({ maxConnections: 1 });
  });
  afterEach(async () => {
    await host.stop();
  });

  it('probe: ok, not found (4), refused by ConnectNotify (5), connection limit (6)', async () => {
    const ok = await fltport('probe', host.portName);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(ok.stdout, `${host.portName}: ok (connected and closed)\n`);

    const missing = await fltport('probe', '\\FltportNoSuchPort', '--json');
    assert.equal(missing.code, 4);
    assert.deepEqual(JSON.parse(missing.stdout), {
      port: '\\FltportNoSuchPort', ok: false, outcome: 'not found', code: 'ERROR_FILE_NOT_FOUND', hresult: '0x80070002',
      message: JSON.parse(missing.stdout).message,
    });

    const refused = await fltport('probe', host.portName, '--context', Buffer.from('refuse').toString('hex'));
    assert.equal(refused.code, 5);
    assert.match(refused.stdout, /: access denied .*: ERROR_ACCESS_DENIED \(0x80070005\)/);

    const holder = await FilterPort.connect(host.portName);
    try {
      const full = await fltport('probe', host.portName);
      assert.equal(full.code, 6);
      assert.match(full.stdout, /connection limit reached: ERROR_CONNECTION_COUNT_LIMIT \(0x800704D6\)/);
    } finally {
      await holder.close();
    }
  });

  it('send: prints the reply as hex and UTF-16, from hex or @FILE, and --json', async () => {
    const payload = Buffer.from('hello', 'utf16le');
    const hex = command(OP.ECHO, [], payload).toString('hex');
    const sent = await fltport('send', host.portName, hex);
    assert.equal(sent.code, 0, sent.stderr);
    assert.equal(sent.stdout, `sent 34 bytes, reply 10 bytes\n  hex:    68 00 65 00 6c 00 6c 00 6f 00\n  utf-16: hello\n`);

    const file = path.join(os.tmpdir(), `fltport-cli-${process.pid}.bin`);
    fs.writeFileSync(file, command(OP.ECHO, [], payload));
    try {
      const fromFile = await fltport('send', host.portName, `@${file}`, '--reply-bytes', '4', '--json');
      assert.equal(fromFile.code, 0, fromFile.stderr);
      assert.deepEqual(JSON.parse(fromFile.stdout), { port: host.portName, sent: 34, replyBytes: 4, hex: '68006500' });
    } finally {
      fs.rmSync(file, { force: true });
    }
  });

  it('send and probe: a failed call exits 1 naming it, without a stack trace', async () => {
    const missing = await fltport('send', '\\FltportNoSuchPort', '00');
    assert.equal(missing.code, 1);
    assert.equal(missing.stdout, '');
    assert.match(missing.stderr, /^fltport: FilterConnectCommunicationPort failed with ERROR_FILE_NOT_FOUND \(0x80070002\)/);
    noStack(missing.stderr);

    const failed = await fltport('send', host.portName, command(OP.FAIL, [0xc000000d]).toString('hex'));
    assert.equal(failed.code, 1);
    assert.match(failed.stderr, /^fltport: FilterSendMessage failed with E_INVALIDARG \(0x80070057\)/);
  });
});

describe('fltport listen against the sample host', function () {
  const target = selectTarget();
  before(async function () {
    if (target.name !== 'emulator') this.skip();
    await target.start();
  });
  after(async () => {
    await target.stop();
  });

  /** Resolves once the sample reports `agents` agent connections. */
  async function agents(count) {
    for (let attempt = 0; attempt < 200; attempt += 1) {
      const port = await FilterPort.connect(target.portName, { context: protocol.connectContext() });
      const stats = await protocol.getStats(port).finally(() => port.close());
      if (stats.Agents === count) return;
      await delay(50);
    }
    throw new Error(`the sample never had ${count} agents`);
  }

  it('prints each message (JSON lines), replies as told, stops after --count and prints a summary', async () => {
    const context = protocol.connectContext({ agent: true }).toString('hex');
    const run = fltport('listen', target.portName, '--context', context, '--count', '2', '--reply-bytes', '8', '--json', '--pending', '2');
    await agents(1);
    const file = target.pathFor(`listened${protocol.DEFAULT_SUFFIX}`);
    const opens = [await target.open(file), await target.open(file)];
    const { code, stdout, stderr } = await run;
    assert.equal(code, 0, stderr);
    const lines = stdout.trim().split('\n').map((line) => JSON.parse(line));
    assert.equal(lines.length, 3, stdout);
    for (const message of lines.slice(0, 2)) {
      assert.match(message.id, /^\d+$/);
      assert.equal(message.expectsReply, true);
      assert.ok(message.bytes > 0);
      assert.ok(Buffer.from(message.hex, 'hex').includes(Buffer.from('listened', 'utf16le')), 'the path is in the message');
    }
    assert.equal(lines[2].summary.received, 2);
    assert.equal(lines[2].summary.replied, 2);
    for (const open of opens) assert.ok(['allow', 'deny'].includes(open.verdict));
  });

  it('prints a table line per message with hex and UTF-16 previews', async () => {
    const context = protocol.connectContext({ agent: true }).toString('hex');
    await agents(0);
    const run = fltport('listen', target.portName, '--context', context, '--count', '1');
    await agents(1);
    await target.open(target.pathFor(`shown${protocol.DEFAULT_SUFFIX}`));
    const { code, stdout, stderr } = await run;
    assert.equal(code, 0, stderr);
    assert.match(stdout, /^#\d+ \d+ bytes, reply up to \d+\n  hex:    ([0-9a-f]{2} )+/);
    assert.match(stdout, /\n  utf-16: .*\n1 messages, 1 replies, 0 late, 0 unsent, 0 failed\n$/);
  });
});
