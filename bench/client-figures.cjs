'use strict';
// What the JS clients of bench/run.mjs (fltport-client.cjs, koffi-client.cjs) measure, the same
// way for both: the figures of their RESULT lines.
const { performance } = require('node:perf_hooks');

/**
 * Messages per sender (or worker) in the warm-up that precedes every measured cell: a tenth, but
 * at least 500 (or all of them), so that short cells (--quick) start as warm as long ones: V8
 * optimizes a function after some thousands of calls. native-client.c does the same.
 */
const warmupCount = (measured) => Math.max(1, Math.floor(measured / 10), Math.min(measured, 500));

const peakBytes = () => process.resourceUsage().maxRSS * 1024;

/** Starts the clocks of a measured part; the function returned reads them. */
function startMeasuring() {
  const cpu0 = process.cpuUsage();
  const elu0 = performance.eventLoopUtilization();
  const t0 = performance.now();
  return () => {
    const wallSeconds = (performance.now() - t0) / 1e3;
    const { user, system } = process.cpuUsage(cpu0);
    const elu = performance.eventLoopUtilization(elu0);
    return { cpuSeconds: (user + system) / 1e6, wallSeconds, jsActiveSeconds: elu.active / 1e3, eventLoopUtilization: elu.utilization };
  };
}

/** A notify cell's timing as the kernel measured it (test-kernel LATENCY, parseLatency). */
function kernelTimed(latency) {
  return {
    elapsedSeconds: latency.elapsedNs / 1e9,
    p50Us: latency.p50Ns / 1e3,
    p99Us: latency.p99Ns / 1e3,
    p999Us: latency.p999Ns / 1e3,
    maxUs: latency.maxNs / 1e3,
    meanUs: latency.meanNs / 1e3,
  };
}

/** A send cell's timing from the client's own latencies (milliseconds) of `recorded` calls. */
function clientTimed(latencies, recorded, elapsedSeconds) {
  const sorted = latencies.subarray(0, recorded).sort();
  const quantile = (q) => (sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]);
  const mean = sorted.reduce((sum, value) => sum + value, 0) / Math.max(1, recorded);
  return {
    elapsedSeconds,
    p50Us: quantile(0.5) * 1e3,
    p99Us: quantile(0.99) * 1e3,
    p999Us: quantile(0.999) * 1e3,
    maxUs: (sorted[recorded - 1] ?? 0) * 1e3,
    meanUs: mean * 1e3,
  };
}

module.exports = { warmupCount, peakBytes, startMeasuring, kernelTimed, clientTimed };
