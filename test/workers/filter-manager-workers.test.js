'use strict';
// Filter-manager calls in a worker that ends while they are in flight (terminate() or
// process.exit() inside it): the process lives on and the main thread's calls still settle.
const assert = require('node:assert/strict');
const { once } = require('node:events');
const { Worker } = require('node:worker_threads');
const fltport = require('fltport');

// Starts 200 calls of every kind, posts 'ready' and, for 'exit', exits with them in flight.
const workerCode = `
const { parentPort, workerData } = require('node:worker_threads');
const fltport = require('fltport');
const ignore = () => {};
for (let i = 0; i < 20; i += 1) {
  fltport.listFilters().catch(ignore);
  fltport.listVolumes().catch(ignore);
  fltport.listInstances().catch(ignore);
  fltport.listInstances('fltportsample').catch(ignore);
  fltport.listVolumeInstances('C:').catch(ignore);
  fltport.getFilterInfo('fltportsample').catch(ignore);
  fltport.dosName('C:').catch(ignore);
  fltport.toDosPath('\\\\Device\\\\HarddiskVolume1\\\\x').catch(ignore);
  fltport.detach('fltport-no-such-filter', 'C:').catch(ignore);
  fltport.attach('fltport-no-such-filter', 'C:', { altitude: '1' }).catch(ignore);
}
parentPort.postMessage('ready');
if (workerData.ending === 'exit') process.exit(0);
`;

async function lifecycle(ending) {
  const worker = new Worker(workerCode, { eval: true, workerData: { ending } });
  let failure;
  worker.on('error', (error) => (failure ??= error));
  worker.on('message', () => {
    if (ending === 'terminate') worker.terminate();
  });
  await once(worker, 'exit');
  if (failure !== undefined) throw failure;
}

describe('filter-manager calls in worker_threads', () => {
  for (const ending of ['terminate', 'exit']) {
    it(`a worker ended by ${ending === 'exit' ? 'process.exit() inside it' : 'terminate()'} with 200 calls in flight, 10 times`, async () => {
      for (let i = 0; i < 10; i += 1) await lifecycle(ending);
      // The main thread's calls settle as before (what they settle with depends on the fltlib.dll).
      const outcomes = await Promise.allSettled([fltport.listFilters(), fltport.dosName('C:')]);
      assert.equal(outcomes.length, 2);
      for (const outcome of outcomes) {
        if (outcome.status === 'rejected') assert.ok(outcome.reason instanceof fltport.WinError, String(outcome.reason));
      }
    });
  }
});
