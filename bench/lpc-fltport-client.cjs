'use strict';
// fltport's side of the LPC benchmark (bench/lpc.mjs), in Windows node.exe: the same requests as
// lpc-bench-native's client, to the same native echo server, through LpcPort.request().
//   node lpc-fltport-client.cjs <port name> <messages> <in flight> <payload bytes>
// Prints {"perSecond":..,"p50Us":..,"p99Us":..}.
const { LpcPort } = require('fltport');

async function main() {
  const [name, messages, inFlight, payload] = [process.argv[2], ...process.argv.slice(3, 6).map(Number)];
  const port = await LpcPort.connect(name);
  const per = Math.floor(messages / inFlight);
  const latencies = new Float64Array(per * inFlight);
  const data = Buffer.alloc(payload, 7);
  const started = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: inFlight }, async (_, worker) => {
      for (let i = 0; i < per; i += 1) {
        const start = process.hrtime.bigint();
        const reply = await port.request(data);
        latencies[worker * per + i] = Number(process.hrtime.bigint() - start) / 1000;
        if (reply.length !== payload) throw new Error(`a reply of ${reply.length} bytes`);
      }
    }),
  );
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  await port.close();
  latencies.sort();
  const total = latencies.length;
  console.log(JSON.stringify({ perSecond: +(total / seconds).toFixed(1), p50Us: +latencies[total >> 1].toFixed(1), p99Us: +latencies[Math.floor(total * 0.99)].toFixed(1) }));
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
