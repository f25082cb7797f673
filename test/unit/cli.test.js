'use strict';
// The fltport command on this machine's node: help, argument errors and, off Windows, the
// "needs Windows" exit. Windows behaviour is in test/cli (under Wine against the emulator).
const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const packageJson = require('../../package.json');

const repoRoot = path.resolve(__dirname, '..', '..');
const cli = path.join(repoRoot, packageJson.bin.fltport);

function run(...args) {
  const result = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8' });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

const COMMANDS = ['filters', 'instances', 'volumes', 'load', 'unload', 'attach', 'detach', 'probe', 'listen', 'send'];
const noStack = (text) => assert.doesNotMatch(text, /^\s+at /m, 'a stack trace was printed');

describe('fltport command line', () => {
  it('is the package\'s bin, a node script', () => {
    assert.deepEqual(Object.keys(packageJson.bin), ['fltport']);
    assert.match(fs.readFileSync(cli, 'utf8'), /^#!\/usr\/bin\/env node\n/);
  });

  it('prints its usage, every command and the exit codes for --help, help and no arguments', () => {
    for (const args of [['--help'], ['help'], [], ['-h']]) {
      const { code, stdout } = run(...args);
      assert.equal(code, 0, args.join(' '));
      for (const command of COMMANDS) assert.match(stdout, new RegExp(`^  ${command}\\b`, 'm'));
      assert.match(stdout, /Exit codes:\n  0  success/);
    }
  });

  it('prints each command\'s own help', function () {
    this.timeout(120000); // 22 node processes, one after another: seconds on a loaded machine
    for (const command of COMMANDS) {
      for (const args of [[command, '--help'], ['help', command]]) {
        const { code, stdout } = run(...args);
        assert.equal(code, 0, args.join(' '));
        assert.match(stdout, new RegExp(`^Usage: fltport ${command}\\b`));
      }
    }
    assert.match(run('attach', '--help').stdout, /--altitude A .*\n.*--instance NAME/);
    assert.match(run('load', '--help').stdout, /administrator/);
    assert.match(run('listen', '--help').stdout, /--pending N[\s\S]*--reply HEX[\s\S]*--reply-bytes N[\s\S]*--json/);
  });

  const badArguments = [
    [['frobnicate'], /unknown command 'frobnicate'/],
    [['load'], /load needs FILTER/],
    [['attach', 'F'], /attach needs FILTER VOLUME/],
    [['filters', 'extra'], /unexpected argument 'extra'/],
    [['volumes', '--bogus'], /Unknown option '--bogus'/],
    [['attach', 'F', 'C:', '--altitude', 'high'], /--altitude must be a decimal altitude/],
    [['listen', '\\P', '--pending', '0'], /--pending must be an integer from 1 to 1024, not '0'/],
    [['listen', '\\P', '--count', '-1'], /--count/],
    [['listen', '\\P', '--reply', '00', '--reply-bytes', '2'], /--reply or --reply-bytes, not both/],
    [['probe', '\\P', '--context', 'xyz'], /--context must be hex bytes/],
    [['send', '\\P', '0g'], /the message must be hex bytes/],
    [['send', '\\P', '@/no/such/file'], /cannot read \/no\/such\/file/],
    [['send', '\\P', '00', '--reply-bytes', '1e3'], /--reply-bytes must be an integer/],
  ];
  for (const [args, message] of badArguments) {
    it(`exits 2 on bad arguments: ${args.join(' ')}`, () => {
      const { code, stdout, stderr } = run(...args);
      assert.equal(code, 2);
      assert.equal(stdout, '');
      assert.match(stderr, message);
      assert.match(stderr, /Run 'fltport .*--help' for usage/);
      noStack(stderr);
    });
  }

  describe('send @FILE larger than the 64 MiB fltport sends through FilterSendMessage', () => {
    const MAX_PAYLOAD_BYTES = 64 * 1024 * 1024; // docs/api.md: the `fltport` command, exit code 2
    const file = path.join(os.tmpdir(), `fltport-cli-big-${process.pid}.bin`);
    after(() => fs.rmSync(file, { force: true }));

    for (const [size, exitsWith] of [[MAX_PAYLOAD_BYTES + 1, 2], [MAX_PAYLOAD_BYTES, process.platform === 'win32' ? 1 : 3]]) {
      it(`${size} bytes: ${exitsWith === 2 ? 'refused as a bad argument (exit 2), from its size' : 'accepted'}`, () => {
        fs.writeFileSync(file, '');
        fs.truncateSync(file, size); // sparse: nothing to write
        const { code, stderr } = run('send', '\\P', `@${file}`);
        assert.equal(code, exitsWith, stderr);
        if (exitsWith === 2) {
          assert.match(stderr, new RegExp(`is ${size} bytes: a message is at most ${MAX_PAYLOAD_BYTES} bytes`));
          noStack(stderr);
        } else {
          assert.doesNotMatch(stderr, /a message is at most/);
        }
      });
    }
  });

  if (process.platform !== 'win32') {
    it('says it needs Windows and exits 3 for every command, without a stack trace', function () {
      this.timeout(120000); // 10 node processes, one after another
      const valid = [['filters'], ['instances'], ['volumes', '--json'], ['load', 'f'], ['unload', 'f'], ['attach', 'f', 'C:'], ['detach', 'f', 'C:'],
        ['probe', '\\P'], ['listen', '\\P'], ['send', '\\P', '00']];
      for (const args of valid) {
        const { code, stdout, stderr } = run(...args);
        assert.equal(code, 3, args.join(' '));
        assert.equal(stdout, '');
        assert.match(stderr, /^fltport: needs Windows/);
        noStack(stderr);
      }
    });
  }
});
