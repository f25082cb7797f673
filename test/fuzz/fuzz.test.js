'use strict';
// Fuzz: thousands of messages, random in size and in FILTER_MESSAGE_HEADER.ReplyLength (headers
// written verbatim by the test kernel's RAW), through receive(), messages() and serve() while
// their reads are aborted at random. Each run is a process of its own: it must exit 0 by itself
// (no crash, nothing left hanging), every message delivered exactly once, with the payload and
// reply size fltport promises. The seed is printed; FLTPORT_FUZZ_SEED replays one.
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const { once } = require('node:events');
const path = require('node:path');
const { startKernel } = require('../../emulator/test-kernel/test-kernel.js');

const seed = Number(process.env.FLTPORT_FUZZ_SEED ?? Date.now() % 0x100000000);

describe(`fuzz (seed ${seed})`, function () {
  let host;
  beforeEach(async () => {
    host = await startKernel();
  });
  afterEach(() => host.stop());

  const run = async (phase) => {
    const child = spawn(process.execPath, [path.join(__dirname, 'fuzz-child.js'), host.portName, String(seed), phase], {
      cwd: path.resolve(__dirname, '..', '..'),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (chunk) => (output += chunk));
    child.stderr.on('data', (chunk) => (output += chunk));
    const timer = setTimeout(() => child.kill(), 200000);
    const [code] = await once(child, 'exit');
    clearTimeout(timer);
    assert.equal(code, 0, `seed ${seed}, phase ${phase}:\n${output}`);
    const result = JSON.parse(output.match(/result (.*)/)[1]);
    console.log(`      seed ${seed}, ${phase}: ${JSON.stringify(result)}`);
    return result;
  };

  it('5,000 messages of 0..bufferBytes with random ReplyLength, read by receive(), messages() and serve() aborted at random', async () => {
    const result = await run('aborts');
    assert.equal(result.delivered, 5000);
  });

  it('400 messages up to 8 x bufferBytes through serve() and 400 through messages(): each read grows and delivers', async () => {
    const result = await run('growth');
    assert.deepEqual(result, { serve: 400, messages: 400 });
  });
});
