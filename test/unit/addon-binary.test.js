'use strict';
// The cross-compiled addon must load in a stock Windows node.exe (and in Electron): a PE32+ DLL
// that imports only NODE.EXE and system DLLs, never a mingw runtime DLL or an ntdll LPC entry
// point that Wine or some Windows lacks (those are resolved at run time).
const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const addon = path.resolve(__dirname, '..', '..', 'build', 'Release', 'fltport.node');
const objdump = 'x86_64-w64-mingw32-objdump';

describe('the mingw-w64 build of the addon', function () {
  let dump;
  before(function () {
    try {
      dump = execFileSync(objdump, ['-p', addon], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    } catch {
      console.log(`    skipped: needs ${objdump} and ${addon} (a Linux cross build)`);
      this.skip();
    }
  });

  it('is a PE32+ x86-64 DLL', () => {
    assert.match(dump, /file format pei-x86-64/);
    assert.match(dump, /Magic\s+020b\s+\(PE32\+\)/);
  });

  // ADVAPI32: loadFilter/unloadFilter enable SeLoadDriverPrivilege for their call.
  it('imports only NODE.EXE, KERNEL32.dll, ADVAPI32.dll, msvcrt.dll and FLTLIB.DLL', () => {
    const imports = [...dump.matchAll(/DLL Name: (\S+)/g)].map((match) => match[1]).sort();
    assert.deepEqual(imports, ['ADVAPI32.dll', 'FLTLIB.DLL', 'KERNEL32.dll', 'NODE.EXE', 'msvcrt.dll']);
  });

  it('imports from FLTLIB.DLL only the four port functions (the filter-manager calls are resolved at run time)', () => {
    const fltlib = dump.slice(dump.indexOf('DLL Name: FLTLIB.DLL')).split(/\n\s*\n/)[0];
    const names = [...fltlib.matchAll(/^\s+[0-9a-f]+\s+\d+\s+(\w+)$/gm)].map((match) => match[1]).sort();
    assert.deepEqual(names, ['FilterConnectCommunicationPort', 'FilterGetMessage', 'FilterReplyMessage', 'FilterSendMessage']);
  });

  it('imports no Nt*Port function statically', () => {
    assert.doesNotMatch(dump, /\bNt\w*Port\b/);
  });
});
