'use strict';
// The koffi side of bench/run.mjs: what a Node developer writes today without fltport. fltlib.dll
// bound with koffi, its calls declared by hand, every blocking call made on libuv's thread pool
// through koffi's `.async` (FilterGetMessage without an OVERLAPPED), one loop per pending read.
// Runs inside Windows node.exe (under Wine on Linux).
//
//   node koffi-client.cjs KERNEL_SYS notify PAYLOAD PENDING COUNT REPLY_BYTES|ff [--deadlock-seconds N] [--shutdown-seconds N]
//   node koffi-client.cjs KERNEL_SYS send PAYLOAD IN_FLIGHT COUNT [--deadlock-seconds N] [--shutdown-seconds N]
//
// The same cells, warm-up, KERNEL <service> and RESULT {json} lines as fltport-client.cjs: PENDING
// loops of FilterGetMessage then FilterReplyMessage (an exact-size reply, header + the first
// REPLY_BYTES bytes of the message) against a test-kernel FLOOD, or IN_FLIGHT loops of
// FilterSendMessage. RESULT also holds maxGapSeconds, the longest wait between two messages
// handled (or calls answered) over the whole run, warm-up included: what --deadlock-seconds must
// stay well above.
//
// libuv's pool has 4 threads unless UV_THREADPOOL_SIZE says otherwise. With more loops than
// threads every thread blocks in FilterGetMessage, and the FilterSendMessage that would start the
// flood waits behind them for ever: a deadlock. It is detected as no message handled for
// --deadlock-seconds (20 s by default, and bench/run.mjs passes 20 unless told otherwise; the
// longest wait of a healthy run is in RESULT as maxGapSeconds); the client then prints
// DEADLOCK {json}, cancels the blocked reads (CancelIoEx from the JS thread), unloads the kernel
// (giving up on calls still on the pool after --shutdown-seconds, default 30) and exits with code 3.
//
// Unverified on Windows: the port handle is asynchronous (no FLT_PORT_FLAG_SYNC_HANDLE, whose
// synchronous file object would serialize every call on the handle behind a blocked read), and
// Microsoft calls synchronous I/O on an overlapped handle undefined (concurrent calls wait on the
// file object's one event). The emulator's fltlib.dll waits on an event of its own for a
// FilterGetMessage without an OVERLAPPED, so here the calls work as the developer expects.
const path = require('node:path');
const { performance } = require('node:perf_hooks');
const { promisify } = require('node:util');
const koffi = require('koffi');
const { startKernel, command, parseLatency, OP, NO_REPLY_BUFFER } = require(path.join(__dirname, '..', 'emulator', 'test-kernel', 'test-kernel.js'));
const { warmupCount, peakBytes, startMeasuring, kernelTimed, clientTimed } = require('./client-figures.cjs');

// ---------------------------------------------------------------- fltlib.dll through koffi

const fltlib = koffi.load('fltlib.dll');
const kernel32 = koffi.load('kernel32.dll');
const FilterConnectCommunicationPort = fltlib.func(
  'long __stdcall FilterConnectCommunicationPort(const char16_t *lpPortName, uint32_t dwOptions, const void *lpContext, uint16_t wSizeOfContext, void *lpSecurityAttributes, _Out_ void **hPort)',
);
const FilterSendMessage = fltlib.func(
  'long __stdcall FilterSendMessage(void *hPort, const void *lpInBuffer, uint32_t dwInBufferSize, void *lpOutBuffer, uint32_t dwOutBufferSize, uint32_t *lpBytesReturned)',
);
const FilterGetMessage = fltlib.func('long __stdcall FilterGetMessage(void *hPort, void *lpMessageBuffer, uint32_t dwMessageBufferSize, void *lpOverlapped)');
const FilterReplyMessage = fltlib.func('long __stdcall FilterReplyMessage(void *hPort, const void *lpReplyBuffer, uint32_t dwReplyBufferSize)');
const CancelIoEx = kernel32.func('int __stdcall CancelIoEx(void *hFile, void *lpOverlapped)');
const CloseHandle = kernel32.func('int __stdcall CloseHandle(void *hObject)');
const GetModuleHandleW = kernel32.func('void * __stdcall GetModuleHandleW(const char16_t *lpModuleName)');
const GetModuleFileNameW = kernel32.func('uint32_t __stdcall GetModuleFileNameW(void *hModule, void *lpFilename, uint32_t nSize)');

const HEADER_BYTES = 16; // FILTER_MESSAGE_HEADER and FILTER_REPLY_HEADER
/** libuv's pool as this process got it (libuv reads UV_THREADPOOL_SIZE once, at its first use). */
const threadpoolSize = process.env.UV_THREADPOOL_SIZE ?? 'default (4)';

const hex = (hr) => `0x${(hr >>> 0).toString(16).padStart(8, '0')}`;
const check = (call, hr) => {
  if (hr < 0) throw new Error(`${call} failed: ${hex(hr)}`);
};

/**
 * The blocking calls as promises: koffi's `.async` on libuv's pool. Each call is tracked so that
 * the end of the run can wait for every call still on a pool thread.
 */
const outstanding = new Set();
function onPool(fn) {
  const start = promisify(fn.async);
  return (...args) => {
    const call = start(...args);
    outstanding.add(call);
    const forget = () => outstanding.delete(call);
    call.then(forget, forget);
    return call;
  };
}
const getMessage = onPool(FilterGetMessage);
const replyMessage = onPool(FilterReplyMessage);
const sendMessage = onPool(FilterSendMessage);

/** What the watchdog watches: messages handled (notify) or calls answered (send). */
let progress = 0;
/** When progress last moved (or the watch started), and the longest wait between two moves. */
let progressAt = performance.now();
let longestWaitMs = 0;
function advance() {
  const now = performance.now();
  longestWaitMs = Math.max(longestWaitMs, now - progressAt);
  progressAt = now;
  progress += 1;
}
/** The longest wait so far, the one still going on included, in seconds. */
const maxGapSeconds = () => Math.max(longestWaitMs, performance.now() - progressAt) / 1e3;
/** Set at the end of a run (or on a deadlock): the loops stop after their current call. */
let stopping = false;
/** FLOOD commands the kernel has taken: 0 in a deadlock means the warm-up's never reached it. */
let floodsStarted = 0;
/** The read loops of a notify cell, for the end of the run. */
let readLoops = [];

class NoProgress extends Error {}

/**
 * Rejects with NoProgress once `progress` has not moved for `seconds` (checked every second).
 * guard(promise) races a phase of the run against it.
 */
function watchProgress(seconds) {
  progressAt = performance.now();
  let seen = progress;
  let since = performance.now();
  let fail;
  const stalled = new Promise((_, reject) => (fail = reject));
  stalled.catch(() => undefined);
  const timer = setInterval(() => {
    if (progress !== seen) {
      seen = progress;
      since = performance.now();
    } else if (performance.now() - since >= seconds * 1000) {
      clearInterval(timer);
      fail(new NoProgress(`no progress in ${seconds} s`));
    }
  }, 1000);
  return { guard: (promise) => Promise.race([promise, stalled]), stop: () => clearInterval(timer) };
}

function loadedFltlibPath() {
  const name = Buffer.alloc(520 * 2);
  const length = GetModuleFileNameW(GetModuleHandleW('fltlib.dll'), name, 520);
  return name.toString('utf16le', 0, length * 2).replaceAll('\\', '/');
}

// ---------------------------------------------------------------- the port

/** A test-kernel command through FilterSendMessage on the pool; resolves with the output bytes. */
async function send(port, request, outputBytes = 0) {
  const output = Buffer.alloc(outputBytes);
  const returned = new Uint32Array(1);
  check('FilterSendMessage', await sendMessage(port, request, request.length, outputBytes ? output : null, outputBytes, returned));
  return output.subarray(0, returned[0]);
}

/** One reader: FilterGetMessage, then (when the kernel waits for one) FilterReplyMessage, again. */
async function readLoop(port, payloadBytes) {
  const message = Buffer.alloc(HEADER_BYTES + payloadBytes);
  let reply = Buffer.alloc(HEADER_BYTES + 16);
  while (!stopping) {
    const hr = await getMessage(port, message, message.length, null);
    if (stopping) return;
    check('FilterGetMessage', hr);
    const replyLength = message.readUInt32LE(0); // header + the kernel's reply buffer; 0: none
    if (replyLength > 0) {
      if (reply.length < replyLength) reply = Buffer.alloc(replyLength);
      reply.writeInt32LE(0, 0); // Status
      message.copy(reply, 8, 8, 16); // MessageId
      message.copy(reply, HEADER_BYTES, HEADER_BYTES, Math.min(replyLength, message.length)); // the kernel checks the echo
      check('FilterReplyMessage', await replyMessage(port, reply, replyLength));
    }
    advance();
  }
}

/** One test-kernel FLOOD, waited for; resolves with the connection's stats (none if stopped first). */
async function flood(port, { perSender, payloadBytes, replyBytes, pending }) {
  await send(port, command(OP.FLOOD, [perSender, payloadBytes, replyBytes, pending]));
  if (stopping) return undefined;
  floodsStarted += 1;
  return send(port, command(OP.WAIT), 32);
}

async function notify(port, { payloadBytes, pending, count, replyBytes }, watch) {
  const perSender = Math.floor(count / pending);
  readLoops = Array.from({ length: pending }, () => readLoop(port, payloadBytes));
  // A loop that fails ends the run at once (with the error) instead of looking like a stall.
  const failed = Promise.all(readLoops);
  const guard = (promise) => watch.guard(Promise.race([promise, failed]));

  // Warm-up, not measured: the same flood, smaller, as fltport-client.cjs does.
  const warm = await guard(flood(port, { perSender: warmupCount(perSender), payloadBytes, replyBytes, pending }));
  const received0 = progress;
  const stop = startMeasuring();
  const stats = await guard(flood(port, { perSender, payloadBytes, replyBytes, pending }));
  const clocks = stop();
  // The kernel's counts are per connection: the warm-up's come off.
  const measured = (offset) => stats.readUInt32LE(offset) - warm.readUInt32LE(offset);
  const latency = parseLatency(await guard(send(port, command(OP.LATENCY), 64)));
  return {
    mode: 'notify',
    ...clocks,
    ...kernelTimed(latency),
    peakBytes: peakBytes(),
    messages: measured(0),
    received: progress - received0,
    matched: measured(8),
    failures: measured(16),
  };
}

async function sendBench(port, { payloadBytes, inFlight, count }, watch) {
  const request = command(OP.ECHO, [], Buffer.alloc(payloadBytes, 0x5a));
  const perWorker = Math.floor(count / inFlight);
  const latencies = new Float64Array(perWorker * inFlight);
  let recorded = 0;
  let failures = 0;
  const worker = async () => {
    for (let i = 0; i < perWorker && !stopping; i += 1) {
      const before = performance.now();
      const output = await send(port, request, payloadBytes);
      latencies[recorded++] = performance.now() - before;
      if (output.length !== payloadBytes) failures += 1;
      advance();
    }
  };
  // Warm-up, not measured, all workers at once as in the measured run.
  const warmup = async () => {
    for (let i = warmupCount(perWorker); i > 0 && !stopping; i -= 1) {
      await send(port, request, payloadBytes);
      advance();
    }
  };
  await watch.guard(Promise.all(Array.from({ length: inFlight }, warmup)));
  const stop = startMeasuring();
  await watch.guard(Promise.all(Array.from({ length: inFlight }, worker)));
  const clocks = stop();
  return {
    mode: 'send',
    ...clocks,
    ...clientTimed(latencies, recorded, clocks.wallSeconds),
    peakBytes: peakBytes(),
    messages: recorded,
    failures,
  };
}

/**
 * The end of every run, a deadlocked one included: the loops stop; CancelIoEx, repeated until
 * every read has returned (a read still queued behind a blocked one enters FilterGetMessage only
 * when a pool thread frees up); the kernel unloads, which ends whatever else is in the kernel (a
 * WAIT, the flood's senders); then the handle closes once no call on a pool thread can use it.
 * Resolves with false when calls were still outstanding after `seconds`.
 */
async function shutDown(port, kernel, seconds) {
  stopping = true;
  const deadline = performance.now() + seconds * 1000;
  const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  let ended = false;
  Promise.allSettled(readLoops).then(() => (ended = true));
  while (!ended && performance.now() < deadline) {
    CancelIoEx(port, null);
    await pause(100);
  }
  await kernel.stop();
  while (outstanding.size > 0 && performance.now() < deadline) await Promise.race([Promise.allSettled([...outstanding]), pause(100)]);
  if (outstanding.size > 0) return false;
  CloseHandle(port);
  return true;
}

function parseArgs(argv) {
  const positional = [...argv];
  const option = (name, fallback) => {
    const at = positional.indexOf(name);
    if (at < 0) return fallback;
    return Number(positional.splice(at, 2)[1]);
  };
  // bench/run.mjs passes both: its time limit for a run is made of them.
  const deadlockSeconds = option('--deadlock-seconds', 20);
  const shutdownSeconds = option('--shutdown-seconds', 30);
  const [kernelSys, mode, payload, concurrency, countText, replyText] = positional;
  return { kernelSys, mode, payloadBytes: Number(payload), concurrency: Number(concurrency), count: Number(countText), replyText, deadlockSeconds, shutdownSeconds };
}

async function main() {
  const { kernelSys, mode, payloadBytes, concurrency, count, replyText, deadlockSeconds, shutdownSeconds } = parseArgs(process.argv.slice(2));
  const kernel = await startKernel({ sys: kernelSys });
  // For bench/run.mjs: the service to unload if it has to kill this process.
  console.log(`KERNEL ${kernel.service}`);
  const handle = [null];
  const connected = FilterConnectCommunicationPort(kernel.portName, 0, null, 0, null, handle);
  if (connected < 0) await kernel.stop();
  check('FilterConnectCommunicationPort', connected);
  const port = handle[0];
  console.log(`FLTLIB ${loadedFltlibPath()}`);
  const watch = watchProgress(deadlockSeconds);
  let result;
  let deadlock;
  let gap;
  try {
    if (mode === 'send') {
      result = await sendBench(port, { payloadBytes, inFlight: concurrency, count }, watch);
    } else {
      const replyBytes = replyText === 'ff' ? NO_REPLY_BUFFER : Number(replyText);
      result = await notify(port, { payloadBytes, pending: concurrency, count, replyBytes }, watch);
    }
  } catch (error) {
    if (!(error instanceof NoProgress)) throw error;
    deadlock = {
      impl: 'koffi',
      mode,
      deadlockSeconds,
      threadpoolSize,
      concurrency,
      messagesHandled: progress,
      ...(mode === 'send' ? {} : { floodsStarted }),
    };
  } finally {
    gap = maxGapSeconds();
    watch.stop();
    const clean = await shutDown(port, kernel, shutdownSeconds);
    if (!clean) console.error(`${outstanding.size} fltlib calls still on libuv's pool after the shutdown: exiting without waiting`);
    if (deadlock) deadlock.cleanShutdown = clean;
  }
  if (deadlock) {
    console.log(`DEADLOCK ${JSON.stringify(deadlock)}`);
    return 3;
  }
  console.log(`RESULT ${JSON.stringify({ impl: 'koffi', threadpoolSize, ...result, maxGapSeconds: gap })}`);
  return result.failures === 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (error) => {
    console.error(error);
    process.exit(1);
  },
);
