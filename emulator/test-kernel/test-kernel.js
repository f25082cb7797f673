'use strict';
// The JS side of test-kernel.exe, a kernel on the filter-manager emulator that obeys commands
// sent through FilterSendMessage (see the comment at the top of test-kernel.c). Used by
// test/filter-port and bench/; runs inside Windows node.exe.
const { spawn } = require('node:child_process');
const { once } = require('node:events');

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

/**
 * Starts a test kernel with a fresh port name; resolves once its port exists. `exe` defaults to
 * FLTPORT_TEST_KERNEL, which scripts/test-windows.mjs --emulator sets.
 */
async function startKernel({ exe = process.env.FLTPORT_TEST_KERNEL, maxConnections = 8 } = {}) {
  if (!exe) throw new Error('FLTPORT_TEST_KERNEL is not set: run this suite through scripts/test-windows.mjs --emulator');
  const portName = `\\FltportTest-${process.pid}-${++portCounter}`;
  const child = spawn(exe, [portName, String(maxConnections)], { stdio: ['pipe', 'pipe', 'inherit'] });
  let output = '';
  child.stdout.setEncoding('utf8');
  await new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`test-kernel exited with ${code} before it was ready`)));
    child.stdout.on('data', (text) => {
      output += text;
      if (output.includes('ready')) resolve();
    });
  });
  child.removeAllListeners('exit');
  const exited = () => child.exitCode !== null || child.signalCode !== null;
  return {
    portName,
    /** Ends the kernel the orderly way (FltEmuUnregisterFilter). */
    async stop() {
      if (exited()) return;
      child.stdin.end();
      await once(child, 'exit');
    },
    /** The kernel process dies: everything on its pipes breaks. */
    async kill() {
      if (exited()) return;
      child.kill();
      await once(child, 'exit');
    },
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
  /** Resolves once `count` delay() calls of this connection are in the kernel at once. */
  blocked: async (port, count) => (await port.send(command(OP.BLOCKED, [count]), { replyBytes: 4 })).readUInt32LE(0),
};

/** The sequence number the test kernel puts in the first 8 bytes of every notification. */
const sequenceOf = (message) => message.data.readBigUInt64LE(0);

module.exports = { startKernel, kernel, command, parseLatency, OP, NO_REPLY_BUFFER, RAW_ID_BASE, sequenceOf };
