'use strict';
// What a port holds and what holds the process: read buffers, the event loop, the threads that
// blocking calls take. The real addon in Windows node.exe against emulator/test-kernel.
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const { once } = require('node:events');
const path = require('node:path');
const { FilterPort } = require('fltport');
const { startKernel, kernel, NO_REPLY_BUFFER, sequenceOf } = require('../../emulator/test-kernel/test-kernel.js');

const MiB = 1024 * 1024;
const ignore = () => {};
const echo = (message) => message.data.subarray(0, 8);

describe('port limits', function () {
  let host;
  const opened = [];
  const connect = async () => {
    const port = await FilterPort.connect(host.portName);
    opened.push(port);
    return port;
  };

  beforeEach(async () => {
    host = await startKernel();
  });
  afterEach(async () => {
    // Stopping the kernel first returns its DELAY calls, so no send outlives the test.
    await host.stop();
    await Promise.allSettled(opened.splice(0).map((port) => port.close()));
  });

  describe('read buffers', () => {
    const isBudgetError = (error) => error instanceof RangeError && error.code === 'ERR_OUT_OF_RANGE' && /at most 268435456 bytes/.test(error.message);

    it('holds at most 256 MiB of bufferBytes per port, and refuses more with a RangeError before any read', async () => {
      const port = await connect();
      const reads = Array.from({ length: 4 }, () => port.receive({ bufferBytes: 64 * MiB }));
      reads.forEach((read) => read.catch(ignore));
      await assert.rejects(port.receive({ bufferBytes: 64 * MiB }), isBudgetError);
      await assert.rejects(port.receive({ bufferBytes: 1 }), isBudgetError);
      await assert.rejects(port.messages({ pending: 1, bufferBytes: 1 }).next(), isBudgetError);
      await assert.rejects(port.serve(echo, { pending: 1, bufferBytes: 1 }), isBudgetError);
      // The budget is the port's: another port holds its own, and a loop within it may start.
      const other = await connect();
      await assert.rejects(other.messages({ pending: 65, bufferBytes: 4 * MiB }).next(), isBudgetError);
      const controller = new AbortController();
      const serving = other.serve(echo, { pending: 64, bufferBytes: 4 * MiB, signal: controller.signal });
      await kernel.notify(other, { count: 1, replyLength: 8 });
      assert.equal((await kernel.wait(other)).matched, 1);
      controller.abort();
      await serving;
      // The four reads are still there: a message reaches one of them.
      await kernel.notify(port, { count: 1, replyLength: NO_REPLY_BUFFER });
      const first = await Promise.race(reads);
      assert.equal(first.data.length, 16);
    });
    it('counts a loop at pending x maxBufferBytes, and a loop refused for it leaves the messages others left to the next reader', async () => {
      const port = await connect();
      await kernel.notify(port, { count: 2, replyLength: NO_REPLY_BUFFER });
      const loop = port.messages({ pending: 4 });
      // Reads complete on several threads: either message may come first.
      const first = sequenceOf((await loop.next()).value);
      await kernel.wait(port);
      // Time for the second message to reach the loop, which leaves it to the next reader.
      await new Promise((resolve) => setTimeout(resolve, 300));
      await loop.return();
      // 1,024 reads that may each grow to 1 MiB: over the budget, although each holds 16 KiB now.
      await assert.rejects(port.messages({ pending: 1024 }).next(), isBudgetError);
      const second = await port.receive({ signal: AbortSignal.timeout(30000) });
      assert.equal(sequenceOf(second), 1n - first);
    });
  });

  describe('the event loop', () => {
    let child;
    afterEach(() => {
      if (child?.exitCode === null) child.kill();
    });
    /** Starts a node.exe running `script`; returns what it has printed so far. */
    const runChild = (script) => {
      child = spawn(process.execPath, ['-e', script], { cwd: path.resolve(__dirname, '..', '..'), stdio: ['ignore', 'pipe', 'pipe'] });
      let output = '';
      child.stdout.on('data', (chunk) => (output += chunk));
      child.stderr.on('data', (chunk) => (output += chunk));
      return () => output;
    };
    // The child holds a send in the kernel (for 10 minutes, or until the kernel stops), knows it
    // is there, then unrefs the port or not.
    const blockedSendScript = (unref) => `
      const { FilterPort } = require('fltport');
      const { kernel } = require('./emulator/test-kernel/test-kernel.js');
      FilterPort.connect(${JSON.stringify(host.portName)}).then(async (port) => {
        kernel.delay(port, 600000).then(() => console.log('the send returned'), () => {});
        await kernel.blocked(port, 1);
        ${unref ? 'port.unref();' : ''}
        console.log('blocked');
      });`;

    it('lets a process exit with a send blocked in the kernel on an unref()ed port', async () => {
      const output = runChild(blockedSendScript(true));
      const [code] = await once(child, 'exit');
      assert.equal(code, 0, output());
      assert.match(output(), /^blocked\s*$/);
    });

    it('keeps the process alive with a send blocked in the kernel on a referenced port', async () => {
      const output = runChild(blockedSendScript(false));
      await new Promise((resolve, reject) => {
        child.stdout.on('data', () => output().includes('blocked') && resolve());
        child.once('exit', (code) => reject(new Error(`the child exited (${code}): ${output()}`)));
        child.once('error', reject);
      });
      await new Promise((resolve) => setTimeout(resolve, 1500));
      assert.equal(child.exitCode, null, 'the child exited although its send was in the kernel');
    });
  });

  describe('blocking calls', () => {
    it('the test kernel: blocked() returns once its count of delays has entered, held at once or not', async () => {
      const port = await connect();
      const entered = kernel.blocked(port, 3);
      // One after another: never more than one in the kernel at once.
      for (let i = 0; i < 3; i += 1) await kernel.delay(port, 20);
      assert.ok((await entered) <= 1, 'at most the last one is still in');
      const held = kernel.blocked(port, 6);
      const sends = Array.from({ length: 3 }, () => kernel.delay(port, 600000));
      sends.forEach((send) => send.catch(ignore));
      assert.equal(await held, 3);
    });

    it('keeps serving notifications while 600 sends are blocked in the kernel (more than the default thread pool has threads)', async function () {
      this.timeout(600000); // 600 threads on each side under Wine on a loaded machine
      const sender = await connect();
      const server = await connect();
      const count = 200;
      await kernel.notify(server, { count, replyLength: 8 });
      const inKernel = kernel.blocked(sender, 500);
      const sends = Array.from({ length: 600 }, () => kernel.delay(sender, 600000));
      sends.forEach((send) => send.catch(ignore));
      assert.ok((await inKernel) >= 500);

      let handled = 0;
      const controller = new AbortController();
      const stats = await server.serve(
        (message) => {
          if (++handled === count) setImmediate(() => controller.abort());
          return echo(message);
        },
        { signal: controller.signal },
      );
      assert.equal(stats.received, count);
      assert.equal(stats.replied, count);
      // The kernel stopping returns the sends.
      await host.stop();
      const settled = await Promise.allSettled(sends);
      assert.equal(settled.length, 600);
    });
  });

  describe('a batch of completions', () => {
    it('settles every read when building one message throws', async () => {
      const port = await connect();
      const reads = [port.receive(), port.receive(), port.receive()];
      let thrown = false;
      // Setting a property named replyLength on any object now throws, once: the addon builds
      // each message object with that property.
      Object.defineProperty(Object.prototype, 'replyLength', {
        configurable: true,
        set(value) {
          if (!thrown) {
            thrown = true;
            throw new Error('a setter on Object.prototype');
          }
          Object.defineProperty(this, 'replyLength', { value, writable: true, enumerable: true, configurable: true });
        },
      });
      try {
        await kernel.notify(port, { count: 3, replyLength: NO_REPLY_BUFFER });
        const settled = await Promise.allSettled(reads);
        assert.equal(settled.filter((result) => result.status === 'rejected' && result.reason.message === 'a setter on Object.prototype').length, 1);
        assert.equal(settled.filter((result) => result.status === 'fulfilled' && result.value.data.length === 16).length, 2);
      } finally {
        delete Object.prototype.replyLength;
      }
    });
  });
});
