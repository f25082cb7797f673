'use strict';
// An LPC server and a client in two processes, run by `npm run demo:lpc` (scripts/demo-lpc.mjs)
// in Windows node.exe: natively on Windows (real ntdll), under Wine with the LPC stand-in here.
// The client sends --requests N requests (default 10,000, 16 at a time) with a live progress
// line, one datagram, and 1 MiB through its view (checked by SHA-256 on both sides); then both
// print a summary.
const crypto = require('node:crypto');
const { fork } = require('node:child_process');
const { LpcPort, LpcServerPort } = require('fltport');

const MiB = 1 << 20;
const IN_FLIGHT = 16;

async function client(name, requests) {
  const port = await LpcPort.connect(name, { connectionInfo: Buffer.from('lpc demo client'), view: { bytes: MiB } });
  const started = process.hrtime.bigint();
  let sent = 0;
  let answered = 0;
  const progress = () => process.stdout.write(`\r  requests answered: ${answered}/${requests}`);
  const worker = async () => {
    while (sent < requests) {
      const i = sent++;
      const reply = await port.request(Buffer.from(`request ${i}`));
      if (reply.toString() !== `reply to request ${i}`) throw new Error(`wrong reply to request ${i}: ${reply}`);
      answered += 1;
      if (answered % 500 === 0) progress();
    }
  };
  await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
  progress();
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  process.stdout.write('\n');
  await port.post(Buffer.from('a datagram: no reply expected'));

  const upload = crypto.randomBytes(MiB);
  port.view.write(0, upload);
  const digest = await port.request(Buffer.from(`view ${MiB}`));
  const ours = crypto.createHash('sha256').update(upload).digest();
  await port.close();
  return { seconds, viewOk: digest.equals(ours), digest: ours.toString('hex').slice(0, 16) };
}

async function main() {
  const requests = Number(process.argv[process.argv.indexOf('--requests') + 1]) || 10000;
  if (process.argv[2] === '--client') {
    const result = await client(process.argv[3], requests);
    process.send(result);
    return;
  }
  const name = `\\RPC Control\\fltport-demo-${process.pid}`;
  const server = await LpcServerPort.create(name);
  console.log(`server: listening on ${name}`);
  const stats = { requests: 0, datagrams: 0, viewBytes: 0, closed: false };
  const serving = (async () => {
    for await (const event of server.events()) {
      if (event.type === 'connect') {
        console.log(`server: client process ${event.clientId.processId} connects (${event.connectionInfo}), view of ${event.clientViewBytes} bytes`);
        await event.accept(Buffer.from('welcome'));
      } else if (event.type === 'request') {
        const text = event.data.toString();
        if (text.startsWith('view ')) {
          const bytes = Number(text.slice(5));
          const data = event.connection.clientView.read(0, bytes);
          stats.viewBytes += bytes;
          await event.reply(crypto.createHash('sha256').update(data).digest());
        } else {
          stats.requests += 1;
          await event.reply(Buffer.from(`reply to ${text}`));
        }
      } else if (event.type === 'datagram') {
        stats.datagrams += 1;
        console.log(`server: datagram "${event.data}"`);
      } else if (event.type === 'port-closed') {
        stats.closed = true;
        break;
      }
    }
  })();
  const child = fork(__filename, ['--client', name, '--requests', String(requests)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const result = await new Promise((resolve, reject) => {
    child.once('message', resolve);
    child.once('exit', (code) => reject(new Error(`the client process exited with ${code}`)));
  });
  await serving;
  await server.close();
  const ok = result.viewOk && stats.requests === requests && stats.datagrams === 1 && stats.closed;
  console.log(
    `summary: ${stats.requests} requests in ${result.seconds.toFixed(2)} s (${Math.round(stats.requests / result.seconds)}/s, ` +
      `${IN_FLIGHT} in flight), ${stats.datagrams} datagram, ${stats.viewBytes} bytes through the view ` +
      `(sha256 ${result.digest}... ${result.viewOk ? 'matches' : 'DIFFERS'}), client port closed: ${stats.closed} -> ${ok ? 'OK' : 'FAILED'}`,
  );
  process.exitCode = ok ? 0 : 1;
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
