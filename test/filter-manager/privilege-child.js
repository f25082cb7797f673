'use strict';
// Run by fltlib-conformance.test.js in a process of its own: changes SeLoadDriverPrivilege in
// this process's token (argv[2]: 'disable' or 'remove'), then reports as JSON what FilterLoad
// answers called directly and through fltport.loadFilter for the filter argv[3].
const koffi = require('koffi');
const fltport = require('fltport');

const [mode, filterName] = process.argv.slice(2);
const LUID = koffi.struct('LUID', { LowPart: 'uint32', HighPart: 'int32' });
const TOKEN_PRIVILEGES = koffi.struct('TOKEN_PRIVILEGES', { PrivilegeCount: 'uint32', Luid: LUID, Attributes: 'uint32' });
const advapi32 = koffi.load('advapi32.dll');
const kernel32 = koffi.load('kernel32.dll');
const OpenProcessToken = advapi32.func('bool __stdcall OpenProcessToken(void *process, uint32 access, _Out_ void **token)');
const LookupPrivilegeValueW = advapi32.func('bool __stdcall LookupPrivilegeValueW(const char16_t *system, const char16_t *name, _Out_ LUID *luid)');
const AdjustTokenPrivileges = advapi32.func('bool __stdcall AdjustTokenPrivileges(void *token, bool disableAll, TOKEN_PRIVILEGES *state, uint32 bytes, void *previous, void *returned)');
const GetCurrentProcess = kernel32.func('void * __stdcall GetCurrentProcess()');
const GetLastError = kernel32.func('uint32 __stdcall GetLastError()');
const FilterLoad = koffi.load('fltlib.dll').func('int32 __stdcall FilterLoad(const char16_t *name)');

const TOKEN_ADJUST_PRIVILEGES = 0x20;
const TOKEN_QUERY = 0x8;
const SE_PRIVILEGE_REMOVED = 0x4;

(async () => {
  const token = [null];
  const luid = {};
  if (!OpenProcessToken(GetCurrentProcess(), TOKEN_ADJUST_PRIVILEGES | TOKEN_QUERY, token)) throw new Error(`OpenProcessToken: ${GetLastError()}`);
  if (!LookupPrivilegeValueW(null, 'SeLoadDriverPrivilege', luid)) throw new Error(`LookupPrivilegeValueW: ${GetLastError()}`);
  const state = { PrivilegeCount: 1, Luid: luid, Attributes: mode === 'remove' ? SE_PRIVILEGE_REMOVED : 0 };
  const adjusted = AdjustTokenPrivileges(token[0], false, state, 0, null, null) && GetLastError() === 0;
  const direct = FilterLoad(filterName) >>> 0;
  const api = await fltport.loadFilter(filterName).then(() => 'ok', (error) => error.code);
  process.stdout.write(JSON.stringify({ adjusted, direct, api }));
})().catch((error) => {
  process.stdout.write(JSON.stringify({ error: String(error) }));
});
