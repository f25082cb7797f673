'use strict';
// Test-only preload (node --require): installs the LPC stand-in (emulator/lpc/lpcemu.dll) in this
// node.exe before anything looks up ntdll's LPC calls, so that the unchanged addon's
// GetProcAddress(ntdll, "NtConnectPort") and friends lead to the stand-in. Forked children inherit
// the --require (process.execArgv), so every process of a test run has it. Never part of the package.
const path = require('node:path');

const standIn = { exports: {} };
// lpcemu.dll is a Node-API module that installs itself when loaded, and ends the process if it cannot.
process.dlopen(standIn, path.join(__dirname, '..', 'emulator', 'build', 'lpcemu.dll'));
// What the LPC suites look for: its counts() (ports, views, handles) for leak checks, and
// FLTPORT_LPC to know that they run against the stand-in (set only once it is installed).
Object.defineProperty(process, Symbol.for('fltport.lpcStandIn'), { value: standIn.exports });
process.env.FLTPORT_LPC = 'stand-in';
