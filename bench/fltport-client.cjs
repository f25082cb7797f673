'use strict';
// The fltport side of bench/run.mjs; runs inside Windows node.exe (under Wine on Linux).
//
//   node fltport-client.cjs KERNEL_EXE notify PAYLOAD PENDING COUNT REPLY_BYTES|ff
//   node fltport-client.cjs KERNEL_EXE send PAYLOAD IN_FLIGHT COUNT
//   node fltport-client.cjs KERNEL_EXE soak PAYLOAD PENDING COUNT REPLY_BYTES
//   node fltport-client.cjs KERNEL_EXE alloc-notify|alloc-send ...   the same, and V8 heap
//                                 allocation per message (sampled) with the sites it comes from
//
// The same cells as native-client.c: `port.serve()` with a trivial handler (it answers with the
// first REPLY_BYTES bytes of the message, an exact-size reply) against a test-kernel FLOOD with
// PENDING sender threads, or `port.send()` with IN_FLIGHT calls outstanding. Prints KERNEL
// <service> once test-kernel.sys is loaded, and RESULT {json}.
const path = require('node:path');
const { performance } = require('node:perf_hooks');
const v8 = require('node:v8');
const inspector = require('node:inspector');
const { FilterPort, runtimeInfo } = require('fltport');
const { startKernel, command, parseLatency, OP, NO_REPLY_BUFFER } = require(path.join(__dirname, '..', 'emulator', 'test-kernel', 'test-kernel.js'));
const { warmupCount, peakBytes, startMeasuring, kernelTimed, clientTimed } = require('./client-figures.cjs');


/**
 * V8's sampling heap profiler over the measured part of a run, collected objects included: every
 * byte the JS side allocates per message, by the function it was allocated in.
 */
async function startAllocationSampling() {
  const session = new inspector.Session();
  session.connect();
  const post = (method, params) => new Promise((resolve, reject) => session.post(method, params, (error, result) => (error ? reject(error) : resolve(result))));
  await post('HeapProfiler.startSampling', { samplingInterval: 256, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
  return async (messages) => {
    const { profile } = await post('HeapProfiler.stopSampling');
    session.disconnect();
    const bySite = new Map();
    let total = 0;
    const walk = (node) => {
      const { functionName, url, lineNumber } = node.callFrame;
      const site = `${functionName || '(anonymous)'}${url ? ` ${path.basename(url)}:${lineNumber + 1}` : ''}`;
      total += node.selfSize;
      if (node.selfSize > 0) bySite.set(site, (bySite.get(site) ?? 0) + node.selfSize);
      for (const child of node.children) walk(child);
    };
    walk(profile.head);
    const sites = [...bySite].sort((a, b) => b[1] - a[1]).slice(0, 12).map(([site, bytes]) => ({ site, bytesPerMessage: bytes / messages }));
    return { bytesPerMessage: total / messages, sites };
  };
}

/** One test-kernel FLOOD, waited for; resolves with the connection's stats. */
async function flood(port, { perSender, payloadBytes, replyBytes, pending }) {
  await port.send(command(OP.FLOOD, [perSender, payloadBytes, replyBytes, pending]));
  return port.send(command(OP.WAIT), { replyBytes: 32 });
}

async function notify(port, { payloadBytes, pending, count, replyBytes, soak, sampleAllocation }) {
  const perSender = Math.floor(count / pending);
  const total = perSender * pending;
  const controller = new AbortController();
  const reply = replyBytes === NO_REPLY_BUFFER ? undefined : replyBytes;
  let handled = 0;
  const rss = [];
  const sample = (label) => {
    const memory = process.memoryUsage();
    // V8's young generation grows on its own heuristics (up to twice --max-semi-space-size):
    // recorded apart, so that growth of everything else, where a leak would show, can be told.
    const newSpace = v8.getHeapSpaceStatistics().find((space) => space.space_name === 'new_space')?.space_size ?? 0;
    rss.push({ label, messages: handled, rss: memory.rss, heapTotal: memory.heapTotal, heapUsed: memory.heapUsed, newSpace, external: memory.external, arrayBuffers: memory.arrayBuffers });
  };
  const marks = soak ? new Set([Math.floor(total / 10), Math.floor(total / 2), total]) : new Set();
  const every = Math.floor(total / 10);
  // The trivial handler: the first replyBytes bytes of the message (its sequence number first).
  const handler = (message) => {
    handled += 1;
    if (soak && (handled % every === 0 || marks.has(handled))) sample(handled === total ? 'end' : `${handled}`);
    return reply === undefined ? undefined : message.data.subarray(0, message.replyBytes);
  };
  const serving = port.serve(handler, { pending, bufferBytes: payloadBytes, signal: controller.signal });
  if (soak) sample('start');

  // Warm-up, not measured (soak excepted: its RSS samples start before the first message): the
  // same flood, smaller (warmupCount), as native-client.c does.
  const warm = soak ? undefined : await flood(port, { perSender: warmupCount(perSender), payloadBytes, replyBytes, pending });

  const allocation = sampleAllocation ? await startAllocationSampling() : undefined;
  const stop = startMeasuring();
  const stats = await flood(port, { perSender, payloadBytes, replyBytes, pending });
  const clocks = stop();
  // The kernel's counts are per connection: the warm-up's come off.
  const measured = (offset) => stats.readUInt32LE(offset) - (warm?.readUInt32LE(offset) ?? 0);
  const allocated = await allocation?.(measured(0));
  const latency = parseLatency(await port.send(command(OP.LATENCY), { replyBytes: 64 }));
  const peak = peakBytes();
  controller.abort();
  const served = await serving;

  return {
    mode: soak ? 'soak' : 'notify',
    ...clocks,
    ...kernelTimed(latency),
    peakBytes: peak,
    messages: measured(0),
    received: served.received - (warm?.readUInt32LE(0) ?? 0),
    matched: measured(8),
    failures: measured(16),
    replyFailures: served.failed,
    ...(soak ? { rss } : {}),
    ...(allocated ? { allocation: allocated } : {}),
  };
}

async function sendBench(port, { payloadBytes, inFlight, count, sampleAllocation }) {
  const request = command(OP.ECHO, [], Buffer.alloc(payloadBytes, 0x5a));
  const perWorker = Math.floor(count / inFlight);
  const latencies = new Float64Array(perWorker * inFlight);
  let recorded = 0;
  let failures = 0;
  const worker = async () => {
    for (let i = 0; i < perWorker; i += 1) {
      const before = performance.now();
      const output = await port.send(request, { replyBytes: payloadBytes });
      latencies[recorded++] = performance.now() - before;
      if (output.length !== payloadBytes) failures += 1;
    }
  };
  // Warm-up, not measured, all workers at once as in the measured run.
  const warmup = async () => {
    for (let i = warmupCount(perWorker); i > 0; i -= 1) await port.send(request, { replyBytes: payloadBytes });
  };
  await Promise.all(Array.from({ length: inFlight }, warmup));
  const allocation = sampleAllocation ? await startAllocationSampling() : undefined;
  const stop = startMeasuring();
  await Promise.all(Array.from({ length: inFlight }, worker));
  const clocks = stop();
  const allocated = await allocation?.(recorded);
  return {
    mode: 'send',
    ...clocks,
    ...clientTimed(latencies, recorded, clocks.wallSeconds),
    peakBytes: peakBytes(),
    messages: recorded,
    failures,
    ...(allocated ? { allocation: allocated } : {}),
  };
}

async function main() {
  const [kernelSys, modeArg, payload, concurrency, countText, replyText] = process.argv.slice(2);
  const sampleAllocation = modeArg.startsWith('alloc-');
  const mode = modeArg.replace(/^alloc-/, '');
  const payloadBytes = Number(payload);
  const count = Number(countText);
  const kernel = await startKernel({ sys: kernelSys });
  // For bench/run.mjs: the service to unload if it has to kill this process.
  console.log(`KERNEL ${kernel.service}`);
  const port = await FilterPort.connect(kernel.portName);
  console.log(`FLTLIB ${String(runtimeInfo().fltlibPath).replaceAll('\\', '/')}`);
  let result;
  try {
    if (mode === 'send') {
      result = await sendBench(port, { payloadBytes, inFlight: Number(concurrency), count, sampleAllocation });
    } else {
      const replyBytes = replyText === 'ff' ? NO_REPLY_BUFFER : Number(replyText);
      result = await notify(port, { payloadBytes, pending: Number(concurrency), count, replyBytes, soak: mode === 'soak', sampleAllocation });
    }
  } finally {
    await port.close();
    await kernel.stop();
  }
  console.log(`RESULT ${JSON.stringify({ impl: 'fltport', ...result })}`);
  return result.failures === 0 ? 0 : 1;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error) => {
    console.error(error);
    process.exitCode = 1;
  },
);
