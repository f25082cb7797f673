'use strict';
// One fuzz run in a process of its own (fuzz.test.js starts it): the test kernel sends messages
// with random sizes and random FILTER_MESSAGE_HEADER.ReplyLength (RAW, headers written verbatim)
// while receive(), messages() and serve() take them and their reads are aborted at random.
// Prints one JSON line "result {...}" and exits 0, or prints the failure and exits 1.
//   node fuzz-child.js PORT_NAME SEED PHASE
// PHASE "aborts": every message fits bufferBytes; readers come and go at random.
// PHASE "growth": messages up to 8 x bufferBytes through one serve() and one messages() loop.
const assert = require('node:assert/strict');
const { FilterPort, AbortError } = require('fltport');
const { kernel, RAW_ID_BASE, sequenceOf } = require('../../emulator/test-kernel/test-kernel.js');

const [portName, seedText, phase] = process.argv.slice(2);
const BUFFER_BYTES = 256;
const MAX_REPLY_BYTES = 64 * 1024 * 1024;
const REPLY_LENGTH_LIMITS = [0, 1, 15, 16, 17, 24, 0xfffffff0, 0xffffffff];

// mulberry32: small, seedable, good enough to pick sizes.
function prng(seed) {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const random = prng(Number(seedText));
const below = (n) => Math.floor(random() * n);
const delay = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function plan(count, largest) {
  return Array.from({ length: count }, () => {
    const shape = below(10);
    const payloadBytes = shape === 0 ? 0 : shape === 1 ? largest : below(largest + 1);
    const replyLength = random() < 0.5 ? REPLY_LENGTH_LIMITS[below(REPLY_LENGTH_LIMITS.length)] : below(0x10000);
    return { payloadBytes, replyLength };
  });
}

/** What fltport promises for a ReplyLength (see ReceivedMessage::FromRead). */
function expectedReply(replyLength) {
  if (replyLength < 16) return { expectsReply: false, replyBytes: 0 };
  return { expectsReply: true, replyBytes: Math.min(replyLength - 16, MAX_REPLY_BYTES) };
}

class Ledger {
  constructor(script) {
    this.script = script;
    this.seen = new Set();
  }

  get complete() {
    return this.seen.size === this.script.length;
  }

  take(message) {
    const sequence = Number(message.id - RAW_ID_BASE);
    const entry = this.script[sequence];
    assert.ok(entry !== undefined, `message id ${message.id} was never sent`);
    assert.ok(!this.seen.has(sequence), `message ${sequence} delivered twice`);
    this.seen.add(sequence);
    assert.equal(message.data.length, entry.payloadBytes, `message ${sequence}: payload length`);
    if (entry.payloadBytes >= 8) assert.equal(sequenceOf(message), BigInt(sequence));
    const { expectsReply, replyBytes } = expectedReply(entry.replyLength);
    assert.equal(message.expectsReply, expectsReply, `message ${sequence}: expectsReply`);
    assert.equal(message.replyBytes, replyBytes, `message ${sequence}: replyBytes`);
  }
}

const isAbort = (error) => error instanceof AbortError;
const answer = (message) => (message.expectsReply ? message.data.subarray(0, Math.min(8, message.replyBytes)) : undefined);

/** A signal that aborts after a random 0..`ms` milliseconds. */
function randomAbort(ms) {
  const controller = new AbortController();
  setTimeout(() => controller.abort(), below(ms + 1));
  return controller.signal;
}

async function abortsPhase(port, ledger) {
  const counts = { receive: 0, messages: 0, serve: 0, aborted: 0, lateReplies: 0 };
  // Whatever a loop reports (a message it could not read, a reply it could not send) is a failure here.
  const reported = [];
  const onError = (error) => reported.push(error);
  const deadline = Date.now() + 150000;
  while (!ledger.complete) {
    assert.deepEqual(reported, []);
    if (Date.now() >= deadline) {
      const missing = ledger.script.map((_, sequence) => sequence).filter((sequence) => !ledger.seen.has(sequence));
      assert.fail(`only ${ledger.seen.size} of ${ledger.script.length} messages arrived; missing: ${missing.slice(0, 20).join(', ')}`);
    }
    const signal = randomAbort(3);
    const reader = below(3);
    try {
      if (reader === 0) {
        counts.receive += 1;
        ledger.take(await port.receive({ bufferBytes: BUFFER_BYTES, signal }));
      } else if (reader === 1) {
        counts.messages += 1;
        const limit = 1 + below(40);
        let taken = 0;
        for await (const message of port.messages({ bufferBytes: BUFFER_BYTES, pending: 1 + below(8), signal, onError })) {
          ledger.take(message);
          if (++taken === limit || ledger.complete) break;
        }
      } else {
        counts.serve += 1;
        const stats = await port.serve((message) => ledger.take(message) ?? answer(message), {
          bufferBytes: BUFFER_BYTES,
          pending: 1 + below(8),
          signal,
          onError,
        });
        assert.equal(stats.failed, 0);
        assert.equal(stats.unsentReplies, 0);
        counts.lateReplies += stats.lateReplies;
      }
    } catch (error) {
      if (!isAbort(error)) throw error;
      counts.aborted += 1;
    }
  }
  assert.deepEqual(reported, []);
  return counts;
}

async function growthPhase(port, ledger, loop) {
  const unreadable = [];
  const options = { bufferBytes: BUFFER_BYTES, maxBufferBytes: 8 * BUFFER_BYTES, pending: 1 + below(8), onError: (error) => unreadable.push(error) };
  if (loop === 'serve') {
    const controller = new AbortController();
    await port.serve(
      (message) => {
        ledger.take(message);
        if (ledger.complete) controller.abort();
        return answer(message);
      },
      { ...options, signal: controller.signal },
    );
  } else {
    for await (const message of port.messages(options)) {
      ledger.take(message);
      if (ledger.complete) break;
    }
  }
  assert.deepEqual(unreadable, []);
}

(async () => {
  const results = {};
  if (phase === 'aborts') {
    const script = plan(5000, BUFFER_BYTES);
    const port = await FilterPort.connect(portName);
    const ledger = new Ledger(script);
    await kernel.raw(port, script);
    results.readers = await abortsPhase(port, ledger);
    const stats = await kernel.wait(port);
    assert.equal(stats.sent, script.length);
    assert.equal(stats.failures + stats.timeouts, 0);
    results.delivered = ledger.seen.size;
    await port.close();
  } else {
    for (const loop of ['serve', 'messages']) {
      const script = plan(400, 8 * BUFFER_BYTES);
      const port = await FilterPort.connect(portName);
      const ledger = new Ledger(script);
      await kernel.raw(port, script);
      await growthPhase(port, ledger, loop);
      assert.equal((await kernel.wait(port)).sent, script.length);
      results[loop] = ledger.seen.size;
      await port.close();
    }
  }
  console.log(`result ${JSON.stringify(results)}`);
  await delay(10);
})().catch((error) => {
  console.error(error);
  process.exit(1);
});
