'use strict';
// A worker_threads worker that uses fltport: workers.test.js ends it in a given state.
//   workerData = { portName, state, ending: 'terminate' | 'exit' }
// It posts 'ready' once in the state; with ending 'exit' it then calls process.exit() itself.
// State 'serveAll' serves workerData.count notifications to the end and posts the kernel's stats.
const { parentPort, workerData } = require('node:worker_threads');
const { FilterPort } = require('fltport');
const { kernel, NO_REPLY_BUFFER } = require('../../emulator/test-kernel/test-kernel.js');

const { portName, state, ending, count = 0 } = workerData;
// How long the sends of state 'sends' stay in the kernel: they outlive the worker.
const SEND_DELAY_MS = 2000;
const SENDS = 20;
const ignore = () => {};
const echo = (message) => message.data.subarray(0, 8);

const enter = {
  idle: async () => {},
  receive: async (port) => {
    port.receive().catch(ignore);
  },
  messages: async (port) => {
    await kernel.notify(port, { count: 1_000_000, replyLength: NO_REPLY_BUFFER });
    await new Promise((resolve) => {
      (async () => {
        for await (const _ of port.messages()) resolve();
      })().catch(ignore);
    });
  },
  serve: async (port) => {
    await kernel.notify(port, { count: 1_000_000, replyLength: 8 });
    await new Promise((resolve) => {
      let handled = 0;
      port
        .serve(async (message) => {
          if (++handled === 50) resolve();
          return echo(message);
        })
        .catch(ignore);
    });
  },
  sends: async (port) => {
    const inKernel = kernel.blocked(port, SENDS);
    for (let i = 0; i < SENDS; i++) kernel.delay(port, SEND_DELAY_MS).catch(ignore);
    if ((await inKernel) === 0) throw new Error('no send was still in the kernel');
  },
};

async function serveAll(port) {
  await kernel.notify(port, { count, replyLength: 8 });
  const controller = new AbortController();
  const serving = port.serve(echo, { signal: controller.signal });
  const stats = await kernel.wait(port);
  controller.abort();
  await serving;
  await port.close();
  parentPort.postMessage({ matched: stats.matched });
}

(async () => {
  const port = await FilterPort.connect(portName);
  if (state === 'serveAll') return serveAll(port);
  await enter[state](port);
  parentPort.postMessage('ready');
  if (ending === 'exit') process.exit(0);
})();
