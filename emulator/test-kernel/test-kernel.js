'use strict';
// The JS side of test-kernel.sys, a minifilter that obeys commands sent through FilterSendMessage
// (see the comment at the top of test-kernel.c). Used by test/filter-port, test/fuzz,
// test/workers and bench/; runs inside Windows node.exe (under Wine on the emulator's
// fltmgr.sys, on Windows on the real filter manager with test signing).
const path = require('node:path');

const OP = { ECHO: 1, FAIL: 2, NOTIFY: 3, STATS: 4, WAIT: 5, DISCONNECT: 6, CONTEXT: 7, FLOOD: 8, LATENCY: 9, RAW: 10, DROP_OVERSIZED: 11, DELAY: 12, BLOCKED: 13 };
/** MessageId of a RAW message = RAW_ID_BASE + its sequence number (unless zeroId). */
const RAW_ID_BASE = 0x10000000000n;
const NO_REPLY_BUFFER = 0xffffffff;
const STATS_BYTES = 32;
let portCounter = 0;

function command(op, args = [], payload = new Uint8Array(0)) {
  const header = Buffer.alloc(24);
  args.forEach((value, index) => header.writeUInt32LE(value >>> 0, 4 + index * 4));
  header.writeUInt32LE(op, 0);
  return Buffer.concat([header, payload]);
}

function parseStats(buffer) {
  const fields = ['sent', 'replied', 'matched', 'timeouts', 'failures', 'lastStatus', 'replyBytesLast', 'connections'];
  return Object.fromEntries(fields.map((field, i) => [field, field === 'lastStatus' ? buffer.readInt32LE(i * 4) : buffer.readUInt32LE(i * 4)]));
}

function parseLatency(buffer) {
  const names = ['count', 'elapsedNs', 'p50Ns', 'p99Ns', 'p999Ns', 'maxNs', 'minNs', 'meanNs'];
  return Object.fromEntries(names.map((name, i) => [name, Number(buffer.readBigUInt64LE(i * 8))]));
}

/** The emulator's build; on Windows, FLTPORT_TEST_KERNEL names the WDK-built, test-signed one. */
const DEFAULT_DRIVER = process.env.FLTPORT_TEST_KERNEL ?? path.join(__dirname, '..', 'build', 'test-kernel.sys');
/** Altitudes in the FSFilter Activity Monitor range; a fraction of its own for each instance. */
const ALTITUDE_BASE = 385100;

/**
 * Loads a fresh instance of test-kernel.sys (a service, a module and a port name of its own) and
 * resolves once its port exists. `sys` defaults to FLTPORT_TEST_KERNEL or
 * emulator/build/test-kernel.sys; `portName` to a fresh one.
 */
async function startKernel({ sys = DEFAULT_DRIVER, maxConnections = 8, portName } = {}) {
  // Loaded on first use: worker threads and child processes use `kernel` without loading drivers.
  const drivers = require('../drivers.js');
  const instance = ++portCounter;
  portName ??= `\\FltportTest-${process.pid}-${instance}`;
  await drivers.startFilterManager();
  const { service } = await drivers.loadDriver(sys, {
    parameters: { PortName: portName, MaxConnections: maxConnections },
    altitude: `${ALTITUDE_BASE}.${process.pid}${String(instance).padStart(4, '0')}`,
  });
  let unloading;
  const unload = () => (unloading ??= drivers.unloadDriver(service));
  return {
    portName,
    service,
    /** Unloads the driver: FltUnregisterFilter disconnects every client (STATUS_PORT_DISCONNECTED). */
    stop: unload,
    /** There is no kernel process to kill any more: the same as stop(). */
    kill: unload,
  };
}

const kernel = {
  echo: (port, payload, replyBytes = payload.length) => port.send(command(OP.ECHO, [], payload), { replyBytes }),
  fail: (port, status) => port.send(command(OP.FAIL, [status])),
  notify: (port, { count, payloadBytes = 16, replyLength = NO_REPLY_BUFFER, timeoutMs = 0 }) =>
    port.send(command(OP.NOTIFY, [count, payloadBytes, replyLength, timeoutMs])),
  stats: async (port) => parseStats(await port.send(command(OP.STATS), { replyBytes: STATS_BYTES })),
  wait: async (port) => parseStats(await port.send(command(OP.WAIT), { replyBytes: STATS_BYTES })),
  disconnect: (port, delayMs = 0) => port.send(command(OP.DISCONNECT, [delayMs])),
  context: (port) => port.send(command(OP.CONTEXT), { replyBytes: 0x10000 }),
  latency: async (port) => parseLatency(await port.send(command(OP.LATENCY), { replyBytes: 64 })),
  /** A message meeting a read too small for it is dropped (the sender fails) instead of kept. */
  dropOversized: (port, drop = true) => port.send(command(OP.DROP_OVERSIZED, [drop ? 1 : 0])),
  /**
   * Messages with headers written verbatim: `messages` = [{ payloadBytes, replyLength }], sent in
   * order by one kernel thread, sequence numbers from `firstSequence`.
   */
  raw: (port, messages, { firstSequence = 0, zeroId = false, timeoutMs = 0 } = {}) => {
    const script = Buffer.alloc(messages.length * 8);
    messages.forEach(({ payloadBytes, replyLength }, i) => {
      script.writeUInt32LE(payloadBytes, i * 8);
      script.writeUInt32LE(replyLength >>> 0, i * 8 + 4);
    });
    return port.send(command(OP.RAW, [timeoutMs, firstSequence, zeroId ? 1 : 0], script));
  },
  /** A send that stays blocked in the kernel for `ms`, or until the kernel stops. */
  delay: (port, ms, options) => port.send(command(OP.DELAY, [ms]), options),
  /** Resolves once `count` delay() calls of this connection have entered the kernel, with how many are in it now. */
  blocked: async (port, count) => (await port.send(command(OP.BLOCKED, [count]), { replyBytes: 4 })).readUInt32LE(0),
};

/** The sequence number the test kernel puts in the first 8 bytes of every notification. */
const sequenceOf = (message) => message.data.readBigUInt64LE(0);

module.exports = { startKernel, kernel, command, parseLatency, OP, NO_REPLY_BUFFER, RAW_ID_BASE, sequenceOf };
