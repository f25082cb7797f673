'use strict';
// fltport in worker_threads: a worker may end in any state (worker.terminate(), process.exit()
// inside it) without crashing the process or leaving its kernel connection open. The real addon
// in Windows node.exe, the emulator's fltlib.dll and emulator/test-kernel as the kernel side.
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const { once } = require('node:events');
const path = require('node:path');
const { Worker } = require('node:worker_threads');
const { FilterPort } = require('fltport');
const { startKernel, kernel } = require('../../emulator/test-kernel/test-kernel.js');

const workerScript = path.join(__dirname, 'port-worker.js');
const STATES = ['idle', 'receive', 'messages', 'serve', 'sends'];
const ENDINGS = ['terminate', 'exit'];
const delay = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Starts a worker in `state`, ends it the `ending` way; resolves once it has exited. */
async function lifecycle(portName, state, ending) {
  const worker = new Worker(workerScript, { workerData: { portName, state, ending } });
  let ready = false;
  let failure;
  worker.on('message', (message) => {
    if (message !== 'ready') return;
    ready = true;
    if (ending === 'terminate') worker.terminate();
  });
  worker.on('error', (error) => (failure ??= error));
  const [code] = await once(worker, 'exit');
  if (failure !== undefined) throw failure;
  assert.ok(ready, `the worker exited (${code}) before it reached state ${state}`);
  return code;
}

/**
 * The kernel's count of open connections once it has come down to `expected` (DisconnectNotify
 * runs after the handle closes, and a send held in the kernel keeps its handle until it returns),
 * or the last count seen within a minute.
 */
async function connectionsSettled(probe, expected) {
  let connections;
  for (let attempt = 0; attempt < 600; attempt++) {
    ({ connections } = await kernel.stats(probe));
    if (connections === expected) break;
    await delay(100);
  }
  return connections;
}

describe('fltport in worker_threads', function () {
  let host;
  let probe; // the main thread's own connection: the kernel's count is 1 when no worker's is open
  let child; // a process of the test's own, ended if the test ends without it

  before(async () => {
    host = await startKernel({ maxConnections: 64 });
    probe = await FilterPort.connect(host.portName);
  });
  afterEach(() => {
    if (child?.exitCode === null) child.kill();
  });
  after(async () => {
    await probe?.close();
    await host?.stop();
  });

  for (const ending of ENDINGS) {
    for (const state of STATES) {
      it(`ends a worker by ${ending === 'exit' ? 'process.exit() inside it' : 'worker.terminate()'} with ${state === 'sends' ? 'sends held in the kernel' : `state ${state}`}; its connection closes`, async () => {
        await lifecycle(host.portName, state, ending);
        assert.equal(await connectionsSettled(probe, 1), 1);
      });
    }
  }

  it('runs 50 lifecycles in a row: no crash, every connection closed, RSS flat', async () => {
    let rssAfterWarmUp = 0;
    for (let i = 0; i < 50; i++) {
      await lifecycle(host.portName, STATES[i % STATES.length], ENDINGS[Math.floor(i / STATES.length) % ENDINGS.length]);
      if (i === 9) {
        assert.equal(await connectionsSettled(probe, 1), 1);
        rssAfterWarmUp = process.memoryUsage().rss;
      }
    }
    assert.equal(await connectionsSettled(probe, 1), 1);
    const growth = process.memoryUsage().rss - rssAfterWarmUp;
    // Generous: a worker's isolate alone is several MB; a leak per lifecycle of what a port
    // holds (its reads, a stream's buffers, a connection) would pass this only if tiny.
    assert.ok(growth < 96 * 1024 * 1024, `RSS grew by ${(growth / 1048576).toFixed(1)} MB over 40 lifecycles`);
  });

  it('serves one kernel from several workers and the main thread at once, and the main thread goes on when they end', async () => {
    const count = 300;
    const port = await FilterPort.connect(host.portName);
    const echo = (message) => message.data.subarray(0, 8);
    try {
      const serveAll = () => {
        const worker = new Worker(workerScript, { workerData: { portName: host.portName, state: 'serveAll', count } });
        return once(worker, 'message').then(([result]) => result);
      };
      await kernel.notify(port, { count, replyLength: 8 });
      const controller = new AbortController();
      const serving = port.serve(echo, { signal: controller.signal });
      const results = await Promise.all([serveAll(), serveAll(), serveAll()]);
      assert.deepEqual(results, [{ matched: count }, { matched: count }, { matched: count }]);
      assert.equal((await kernel.wait(port)).matched, count);

      // Workers ended mid-stream while the main thread serves.
      await kernel.notify(port, { count, replyLength: 8 });
      await Promise.all(['terminate', 'exit', 'terminate'].map((ending) => lifecycle(host.portName, 'serve', ending)));
      assert.equal((await kernel.wait(port)).matched, 2 * count);
      controller.abort();
      await serving;
    } finally {
      await port.close();
    }
    assert.equal(await connectionsSettled(probe, 1), 1);
  });

  it('survives workers ending in every state in a process whose main thread never loads the addon', async () => {
    child = spawn(
      process.execPath,
      [
        '-e',
        `
        const { Worker } = require('node:worker_threads');
        const { once } = require('node:events');
        (async () => {
          for (let round = 0; round < 2; round++) {
            for (const ending of ${JSON.stringify(ENDINGS)}) {
              for (const state of ${JSON.stringify(STATES)}) {
                const worker = new Worker(${JSON.stringify(workerScript)}, {
                  workerData: { portName: ${JSON.stringify(host.portName)}, state, ending },
                });
                worker.on('message', () => ending === 'terminate' && worker.terminate());
                worker.on('error', (error) => console.log('worker error', error));
                await once(worker, 'exit');
              }
            }
          }
          // Node unloads an addon once the last environment that loaded it ends.
          const addonInMain = Object.keys(require.cache).some((file) => file.endsWith('.node'));
          console.log(addonInMain ? 'the addon was loaded in the main thread' : 'survived');
        })();`,
      ],
      { cwd: path.resolve(__dirname, '..', '..'), stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let output = '';
    child.stdout.on('data', (chunk) => (output += chunk));
    child.stderr.on('data', (chunk) => (output += chunk));
    const [code] = await once(child, 'exit');
    assert.equal(code, 0, output);
    assert.match(output, /^survived\s*$/, output);
    assert.equal(await connectionsSettled(probe, 1), 1);
  });
});
