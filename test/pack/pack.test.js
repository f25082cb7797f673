'use strict';
// The npm package as users get it: exactly the files a user needs, installable into a fresh
// project, and working there in Windows node.exe (under Wine here, with the mingw-w64 build
// standing in for the MSVC prebuilt binary; natively on Windows in the release workflow, with
// FLTPORT_PACK_TARBALL naming the tarball it made).
const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const repoRoot = path.resolve(__dirname, '..', '..');
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const runNpm = (args, cwd) => execFileSync(npm, args, { cwd, encoding: 'utf8', shell: process.platform === 'win32', stdio: ['ignore', 'pipe', 'pipe'] });

describe('the packed package', function () {
  let work;
  let tarball;

  before(function () {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'fltport-pack-'));
    tarball = process.env.FLTPORT_PACK_TARBALL;
    if (tarball) return;
    // Stand-in for the release's MSVC prebuilt binary, removed again right after packing so that
    // the loader does not prefer it over later builds.
    const prebuilt = path.join(repoRoot, 'prebuilds', 'win32-x64', 'fltport.node');
    fs.mkdirSync(path.dirname(prebuilt), { recursive: true });
    fs.copyFileSync(path.join(repoRoot, 'build', 'Release', 'fltport.node'), prebuilt);
    try {
      const packed = JSON.parse(runNpm(['pack', '--json', '--pack-destination', work], repoRoot));
      tarball = path.join(work, packed[0].filename);
    } finally {
      fs.rmSync(path.join(repoRoot, 'prebuilds'), { recursive: true, force: true });
    }
  });

  after(() => fs.rmSync(work, { recursive: true, force: true }));

  it('holds exactly dist/, the prebuilt binaries, docs/, README, LICENSE and package.json', () => {
    const listing = execFileSync('tar', ['-tzf', tarball], { encoding: 'utf8' }).trim().split('\n').map((entry) => entry.replace(/^package\//, ''));
    const unexpected = listing.filter((file) => !/^(dist\/.+\.(js|mjs|d\.ts)|prebuilds\/win32-(x64|arm64)\/fltport\.node|docs\/[^/]+\.md|README\.md|LICENSE|package\.json)$/.test(file));
    assert.deepEqual(unexpected, []);
    for (const needed of ['dist/lib/index.js', 'dist/lib/index.d.ts', 'dist/esm/index.mjs', 'dist/binding/loader.js', 'prebuilds/win32-x64/fltport.node', 'docs/api.md', 'README.md', 'LICENSE']) {
      assert.ok(listing.includes(needed), `${needed} is missing`);
    }
  });

  it('installs into a fresh project without running any install script, and works in Windows node.exe', async () => {
    const project = path.join(work, 'project');
    fs.mkdirSync(project);
    fs.writeFileSync(path.join(project, 'package.json'), JSON.stringify({ name: 'pack-check', private: true }));
    runNpm(['install', '--no-audit', '--no-fund', '--ignore-scripts', '--prefer-offline', tarball], project);
    fs.copyFileSync(path.join(__dirname, 'smoke.cjs'), path.join(project, 'smoke.cjs'));
    const { runWindowsProgram, windowsNodeExe } = await import('../../scripts/windows-runtime.mjs');
    const { code, output } = await runWindowsProgram(windowsNodeExe(), ['smoke.cjs'], { cwd: project, echo: false });
    assert.equal(code, 0, output);
    assert.match(output, /smoke ok: win32-x64/);
  });
});
