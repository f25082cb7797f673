'use strict';
// The filters every file of this suite runs against: the sample (fltportsample.sys at 370035,
// port \FltportSample, opens injected through fltmgr-control) and wdkstyle.sys (at 380000), both
// on the emulated filter manager under Wine. Each file loads its own pair in before() and unloads
// it in after(); under Windows the suite skips (test/windows checks the real filter manager).
const { startEmulatedSample, loadEmulatedFilter } = require('../../driver-sample/emulated');
const drivers = require('../../emulator/drivers');

/** For mocha: `const emulated = useFilters();` then emulated.sample, emulated.sampleName, emulated.wdkName. */
function useFilters() {
  const filters = { sample: undefined, sampleName: undefined, wdkName: undefined };
  let unloadWdk;
  before(async function () {
    if (!drivers.isWine) this.skip();
    filters.sample = await startEmulatedSample();
    unloadWdk = await loadEmulatedFilter('wdkstyle.sys', '380000');
    filters.sampleName = drivers.loadedDrivers().find((name) => name.startsWith('fltportsample-'));
    filters.wdkName = drivers.loadedDrivers().find((name) => name.startsWith('wdkstyle-'));
  });
  after(async () => {
    await unloadWdk?.();
    await filters.sample?.stop();
  });
  return filters;
}

module.exports = { useFilters };
