'use strict';
// The fltport command end to end: Windows node.exe runs dist/lib/cli/main.js against the
// emulator's test kernel (probe, send); output and exit codes. The filter-manager commands and
// listen (against the sample driver) are in test/filter-manager/cli.test.js.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { FilterPort } = require('fltport');
const { startKernel, kernel, command, OP } = require('../../emulator/test-kernel/test-kernel.js');
const { fltport, killRunning, noStack } = require('./run-cli');

afterEach(killRunning);

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

  it('send and listen: no such port (4), refused by ConnectNotify (5), connection limit (6), as probe', async () => {
    const refuse = Buffer.from('refuse').toString('hex');
    for (const command of [['send', '00'], ['listen']]) {
      const [name, ...rest] = command;
      const missing = await fltport(name, '\\FltportNoSuchPort', ...rest);
      assert.equal(missing.code, 4, `${name}: ${missing.stderr}`);
      assert.equal(missing.stdout, '');
      assert.match(missing.stderr, /^fltport: FilterConnectCommunicationPort failed with ERROR_FILE_NOT_FOUND \(0x80070002\)/);
      noStack(missing.stderr);

      const refused = await fltport(name, host.portName, ...rest, '--context', refuse);
      assert.equal(refused.code, 5, `${name}: ${refused.stderr}`);
      assert.match(refused.stderr, /^fltport: FilterConnectCommunicationPort failed with ERROR_ACCESS_DENIED \(0x80070005\)/);

      const holder = await FilterPort.connect(host.portName);
      try {
        const full = await fltport(name, host.portName, ...rest);
        assert.equal(full.code, 6, `${name}: ${full.stderr}`);
        assert.match(full.stderr, /ERROR_CONNECTION_COUNT_LIMIT \(0x800704D6\)/);
      } finally {
        await holder.close();
      }
    }
  });

  it('listen: exits 1 when the kernel side disconnects, saying so', async () => {
    // Two slots: one for this test's own port, which asks the kernel how many are connected, so
    // that listen never meets a connection of ours in its way (it would exit 6).
    await host.stop();
    host = await startKernel({ maxConnections: 2 });
    let exited = null;
    const listening = fltport('listen', host.portName).then(
      (result) => (exited = result),
      (error) => (exited = { spawnFailed: error.message }),
    );
    const observer = await FilterPort.connect(host.portName);
    try {
      for (let attempt = 0; (await kernel.stats(observer)).connections < 2; attempt += 1) {
        assert.equal(exited, null, `listen exited before it connected: ${JSON.stringify(exited)}`);
        assert.ok(attempt < 1200, 'listen never connected');
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    } finally {
      await observer.close();
    }
    await host.stop(); // FltUnregisterFilter disconnects listen
    const { code, stdout, stderr } = await listening;
    assert.equal(code, 1, stderr);
    assert.match(stdout, /^0 messages/m);
    assert.match(stderr, /^fltport: the kernel side disconnected: /);
    noStack(stderr);
  });

  it('send: a failed call exits 1 naming it, without a stack trace', async () => {
    const failed = await fltport('send', host.portName, command(OP.FAIL, [0xc000000d]).toString('hex'));
    assert.equal(failed.code, 1);
    assert.match(failed.stderr, /^fltport: FilterSendMessage failed with E_INVALIDARG \(0x80070057\)/);
  });
});
