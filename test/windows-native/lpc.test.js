'use strict';
// LPC ports end to end: server and client in one process and across two processes.
//
// UNVERIFIED: written against the documented and ReactOS semantics; it has not yet run on real
// Windows. Under Wine it runs against the LPC stand-in (emulator/lpc/, which follows ReactOS) when
// the test runner preloads it (scripts/test-windows.mjs --lpc-stand-in), and skips itself
// otherwise. Expectations marked UNCONFIRMED pin the behaviour fltport picked; adjust them, and
// docs/api.md ("What is verified where"), once this suite has run on Windows.
//
// Run on Windows: npx mocha --config test/windows-native/.mocharc.json
// This file is also the child process of the cross-process tests (argv[2] === '--lpc-child').
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { fork } = require('node:child_process');
const {
  LpcPort,
  LpcServerPort,
  WinError,
  FltportError,
  MAX_LPC_MESSAGE_BYTES,
  MAX_LPC_CONNECTION_INFO_BYTES,
  MAX_LPC_VIEW_BYTES,
} = require('fltport');

const MiB = 1 << 20;

// ---- child process side ----

async function child(role, name) {
  if (role === 'client') {
    // Connects, answers the parent's commands over IPC, and is killed by the parent.
    const client = await LpcPort.connect(name, { connectionInfo: Buffer.from('child-client-info') });
    process.on('message', async (command) => {
      if (command.op === 'request') {
        const reply = await client.request(Buffer.from(command.data));
        process.send({ op: 'reply', data: reply.toString() });
      } else if (command.op === 'post') {
        await client.post(Buffer.from(command.data));
        process.send({ op: 'posted' });
      }
    });
    process.send({ op: 'connected', info: client.serverConnectionInfo.toString() });
  } else {
    // A server that accepts everyone, answers requests after `delay` ms, and is killed by the parent.
    const server = await LpcServerPort.create(name);
    process.send({ op: 'listening' });
    for await (const event of server.events()) {
      if (event.type === 'connect') await event.accept(Buffer.from('child-server'));
      if (event.type === 'request') {
        process.send({ op: 'request', data: event.data.toString() });
        if (event.data.toString() !== 'hang') await event.reply(Buffer.from(`echo:${event.data}`));
      }
    }
  }
}

if (process.argv[2] === '--lpc-child') {
  child(process.argv[3], process.argv[4]).catch((error) => {
    console.error(error);
    process.exit(70);
  });
} else {
  suite();
}

// ---- the suite ----

function uniqueName(tag) {
  return `\\RPC Control\\fltport-test-${tag}-${process.pid}-${crypto.randomBytes(4).toString('hex')}`;
}

/** Takes events off `server` one at a time, asserting their type. */
function pump(server) {
  const events = server.events();
  return async (type) => {
    const { value, done } = await events.next();
    assert.equal(done, false, `expected a ${type} event, the iterator ended`);
    assert.equal(value.type, type);
    return value;
  };
}

/** A server in this process and a client connected to it. */
async function connectedPair(options = {}) {
  const name = uniqueName('pair');
  const server = await LpcServerPort.create(name, options.server);
  const next = pump(server);
  const connecting = LpcPort.connect(name, options.client);
  const connect = await next('connect');
  const connection = await connect.accept(options.acceptInfo, options.accept);
  const client = await connecting;
  return { name, server, next, client, connection, connect };
}

/** This process's user SID in S-1-... form, read with advapi32 through koffi (not through fltport). */
function currentUserSid() {
  const koffi = require('koffi');
  const kernel32 = koffi.load('kernel32.dll');
  const advapi32 = koffi.load('advapi32.dll');
  const GetCurrentProcess = kernel32.func('void *__stdcall GetCurrentProcess()');
  const CloseHandle = kernel32.func('int __stdcall CloseHandle(void *handle)');
  const LocalFree = kernel32.func('void *__stdcall LocalFree(void *memory)');
  const OpenProcessToken = advapi32.func('int __stdcall OpenProcessToken(void *process, uint32_t access, _Out_ void **token)');
  const GetTokenInformation = advapi32.func('int __stdcall GetTokenInformation(void *token, int type, _Out_ uint8_t *info, uint32_t bytes, _Out_ uint32_t *needed)');
  const ConvertSidToStringSidW = advapi32.func('int __stdcall ConvertSidToStringSidW(void *sid, _Out_ void **text)');
  const TOKEN_QUERY = 0x8;
  const TokenUser = 1;
  const token = [null];
  assert.ok(OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, token), 'OpenProcessToken');
  try {
    const info = Buffer.alloc(256);
    assert.ok(GetTokenInformation(token[0], TokenUser, info, info.length, [0]), 'GetTokenInformation');
    const { Sid } = koffi.decode(info, koffi.struct({ Sid: 'void *', Attributes: 'uint32_t' }));
    const text = [null];
    assert.ok(ConvertSidToStringSidW(Sid, text), 'ConvertSidToStringSidW');
    try {
      return koffi.decode(text[0], 'char16_t', -1);
    } finally {
      LocalFree(text[0]);
    }
  } finally {
    CloseHandle(token[0]);
  }
}

function spawnChild(role, name) {
  const processHandle = fork(__filename, ['--lpc-child', role, name], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const inbox = [];
  const waiters = [];
  processHandle.on('message', (message) => {
    const waiter = waiters.shift();
    if (waiter) waiter(message);
    else inbox.push(message);
  });
  const receive = () => (inbox.length > 0 ? Promise.resolve(inbox.shift()) : new Promise((resolve) => waiters.push(resolve)));
  return { processHandle, receive };
}

function suite() {
  describe('LPC ports end to end (real ntdll on Windows, the LPC stand-in under Wine; UNVERIFIED on Windows until run there)', function () {
    before(function () {
      let reason;
      if (process.platform !== 'win32') {
        reason = `platform is ${process.platform}, not win32`;
      } else {
        const { runtimeInfo } = require('fltport');
        const wine = runtimeInfo().wineVersion;
        // The test runner's preload sets FLTPORT_LPC once the LPC stand-in is installed.
        if (wine !== null && process.env.FLTPORT_LPC !== 'stand-in') {
          reason = `running under Wine ${wine}, whose ntdll LPC calls return STATUS_NOT_IMPLEMENTED (run with the LPC stand-in: scripts/test-windows.mjs --lpc-stand-in)`;
        }
      }
      if (reason !== undefined) {
        console.log(`  skipping the LPC end-to-end suite: ${reason}`);
        this.skip();
      }
    });

    const open = [];
    const track = (...ports) => {
      open.push(...ports);
      return ports[0];
    };
    afterEach(async () => {
      await Promise.allSettled(open.splice(0).map((port) => port.close()));
    });

    describe('in one process', () => {
      it('connects with connection info both ways', async () => {
        const name = uniqueName('info');
        const server = track(await LpcServerPort.create(name, { maxConnectionInfoBytes: 64 }));
        const next = pump(server);
        const connecting = LpcPort.connect(name, { connectionInfo: Buffer.from('client says hello, padded') });
        const connect = await next('connect');
        assert.equal(connect.connectionInfo.toString(), 'client says hello, padded');
        assert.equal(connect.clientId.processId, process.pid);
        assert.equal(connect.clientViewBytes, 0);
        const connection = await connect.accept(Buffer.from('welcome'));
        const client = track(await connecting);
        // The kernel returns the server's answer cut to the length the client sent (ReactOS;
        // UNCONFIRMED on Windows): 'welcome' is shorter, so it arrives whole.
        assert.equal(client.serverConnectionInfo.toString(), 'welcome');
        assert.equal(client.maxMessageBytes, MAX_LPC_MESSAGE_BYTES);
        assert.equal(connection.clientId.processId, process.pid);
      });

      it('refuses a connection: the client gets STATUS_PORT_CONNECTION_REFUSED', async () => {
        const name = uniqueName('refuse');
        const server = track(await LpcServerPort.create(name));
        const next = pump(server);
        const connecting = LpcPort.connect(name);
        await (await next('connect')).refuse();
        await assert.rejects(connecting, (error) => error instanceof WinError && error.code === 'STATUS_PORT_CONNECTION_REFUSED' && error.ntstatus === 0xc0000041);
      });

      it('serverSid: connects through NtSecureConnectPort when the server runs as that SID, and not otherwise', async () => {
        const name = uniqueName('secure');
        const server = track(await LpcServerPort.create(name));
        const next = pump(server);
        // SDDL's alias for SYSTEM, which the server does not run as: refused before the server hears
        // of it (UNCONFIRMED: ReactOS checks before queueing the request; so does the stand-in).
        await assert.rejects(LpcPort.connect(name, { serverSid: 'SY' }), (error) => error instanceof WinError && error.code === 'STATUS_SERVER_SID_MISMATCH' && error.ntstatus === 0xc00002a0);
        const connecting = LpcPort.connect(name, { serverSid: currentUserSid(), connectionInfo: Buffer.from('the first connect') });
        const connect = await next('connect');
        assert.equal(connect.connectionInfo.toString(), 'the first connect');
        const connection = await connect.accept();
        const client = track(await connecting);
        const replying = client.request(Buffer.from('ping'));
        await (await next('request')).reply(Buffer.from('pong'));
        assert.equal((await replying).toString(), 'pong');
        assert.equal(connection.closed, false);
      });

      it('requests and replies with 0..max bytes each way', async () => {
        const { server, client, next, connection } = await connectedPair();
        track(client, server);
        for (const size of [0, 1, 2, 100, MAX_LPC_MESSAGE_BYTES - 1, MAX_LPC_MESSAGE_BYTES]) {
          const payload = crypto.randomBytes(size);
          const replying = client.request(payload);
          const request = await next('request');
          assert.equal(request.connection, connection);
          assert.deepEqual(request.data, payload);
          assert.equal(request.message.clientId.processId, process.pid);
          await request.reply(Buffer.from(payload).reverse());
          assert.deepEqual(await replying, Buffer.from(payload).reverse());
        }
      });

      it('refuses a payload over maxMessageBytes with a RangeError before any call', async () => {
        const { server, client } = await connectedPair({ server: { maxMessageBytes: 100 } });
        track(client, server);
        assert.equal(client.maxMessageBytes, 100);
        await assert.rejects(client.request(new Uint8Array(101)), RangeError);
        await assert.rejects(client.post(new Uint8Array(101)), RangeError);
      });

      it('delivers datagrams (NtRequestPort) in order', async () => {
        const { server, client, next, connection } = await connectedPair();
        track(client, server);
        for (let i = 0; i < 20; i += 1) await client.post(Buffer.from(`datagram ${i}`));
        for (let i = 0; i < 20; i += 1) {
          const datagram = await next('datagram');
          assert.equal(datagram.connection, connection);
          assert.equal(datagram.data.toString(), `datagram ${i}`);
        }
      });

      it('transfers 1 MiB through the client view and back through the server view', async () => {
        const { server, client, next, connection } = await connectedPair({
          client: { view: { bytes: MiB } },
          accept: { view: { bytes: MiB } },
        });
        track(client, server);
        assert.ok(client.view.bytes >= MiB);
        assert.ok(connection.clientView.bytes >= MiB);
        assert.ok(connection.view.bytes >= MiB);
        assert.ok(client.serverView.bytes >= MiB);

        const upload = crypto.randomBytes(MiB);
        client.view.write(0, upload);
        const replying = client.request(Buffer.from(`${MiB}`));
        const request = await next('request');
        const received = connection.clientView.read(0, Number(request.data.toString()));
        assert.deepEqual(received, upload);
        const download = Buffer.from(received).reverse();
        connection.view.write(0, download);
        await request.reply(crypto.createHash('sha256').update(download).digest());
        const digest = await replying;
        const seen = client.serverView.read(0, MiB);
        assert.deepEqual(crypto.createHash('sha256').update(seen).digest(), digest);
        assert.throws(() => client.view.read(client.view.bytes - 1, 2), RangeError);
      });

      it('a request pending when the server closes fails with STATUS_PORT_DISCONNECTED (UNCONFIRMED)', async () => {
        const { server, client, next } = await connectedPair();
        track(client);
        const failed = assert.rejects(client.request(Buffer.from('never answered')), (error) => error instanceof WinError && error.code === 'STATUS_PORT_DISCONNECTED');
        await next('request');
        await server.close();
        await failed;
        assert.equal(client.closed, true);
        await assert.rejects(client.post(), { code: 'STATUS_PORT_DISCONNECTED' });
      });

      it('server.close() refuses a connection request nobody answered', async () => {
        const name = uniqueName('unanswered');
        const server = await LpcServerPort.create(name);
        const next = pump(server);
        const refused = assert.rejects(LpcPort.connect(name), { code: 'STATUS_PORT_CONNECTION_REFUSED' });
        await next('connect');
        await server.close();
        await refused;
      });

      it('client.close() settles a pending request once with ERR_FLTPORT_CLOSED; the server sees port-closed', async () => {
        const { server, client, next, connection } = await connectedPair();
        track(server);
        const closedFirst = assert.rejects(client.request(Buffer.from('pending')), (error) => error instanceof FltportError && error.code === 'ERR_FLTPORT_CLOSED');
        const request = await next('request');
        await client.close();
        await closedFirst;
        await assert.rejects(client.request(), { code: 'ERR_FLTPORT_CLOSED' });
        // The handle closes once the request inside the kernel returns: answer it.
        await request.reply(Buffer.from('late'));
        const closed = await next('port-closed');
        assert.equal(closed.connection, connection);
        assert.equal(connection.closed, true);
      });

      it('a server connection closed on its side disconnects the client', async () => {
        const { server, client, connection } = await connectedPair();
        track(client, server);
        connection.close();
        await assert.rejects(client.request(Buffer.from('x')), { code: 'STATUS_PORT_DISCONNECTED' });
      });

      it('settles 50 concurrent requests from 50 clients exactly once each', async () => {
        const name = uniqueName('many');
        const server = track(await LpcServerPort.create(name));
        (async () => {
          for await (const event of server.events()) {
            if (event.type === 'connect') await event.accept();
            if (event.type === 'request') await event.reply(event.data);
          }
        })();
        const clients = await Promise.all(Array.from({ length: 50 }, () => LpcPort.connect(name)));
        track(...clients);
        const replies = await Promise.all(clients.map((client, i) => client.request(Buffer.from(`n${i}`))));
        replies.forEach((reply, i) => assert.equal(reply.toString(), `n${i}`));
      });
    });

    describe('load, races with close, limits', () => {
      /** A server in this process that accepts everyone (with a server view of `acceptViewBytes`) and echoes every request. */
      async function echoServer(acceptViewBytes = 0) {
        const name = uniqueName('echo');
        const server = track(await LpcServerPort.create(name));
        const seen = { closed: 0 };
        const served = (async () => {
          for await (const event of server.events()) {
            if (event.type === 'connect') await event.accept(undefined, acceptViewBytes ? { view: { bytes: acceptViewBytes } } : undefined).catch(() => {});
            else if (event.type === 'request') await event.reply(event.data).catch(() => {});
            else if (event.type === 'port-closed') seen.closed += 1;
          }
        })();
        return { name, server, seen, served };
      }

      /** Resolves once `condition()` holds (checked every 10 ms; the test's timeout bounds it). */
      async function until(condition) {
        while (!condition()) await new Promise((resolve) => setTimeout(resolve, 10));
      }

      it('answers 1,000 concurrent requests from 10 clients, each with its own reply', async () => {
        const { name } = await echoServer();
        const clients = await Promise.all(Array.from({ length: 10 }, () => LpcPort.connect(name)));
        track(...clients);
        const replies = await Promise.all(Array.from({ length: 1000 }, (_, i) => clients[i % 10].request(Buffer.from(`request ${i}`))));
        replies.forEach((reply, i) => assert.equal(reply.toString(), `request ${i}`));
      });

      it('requests racing client.close() settle once each: their reply or ERR_FLTPORT_CLOSED', async () => {
        const { name } = await echoServer();
        for (let round = 0; round < 20; round += 1) {
          const client = await LpcPort.connect(name);
          let settled = 0;
          const outcomes = Array.from({ length: 20 }, (_, i) =>
            client.request(Buffer.from(`r${round}-${i}`)).then(
              (reply) => {
                settled += 1;
                return reply.toString();
              },
              (error) => {
                settled += 1;
                return error;
              },
            ),
          );
          // Close at a different point of the requests' lives each round.
          await new Promise((resolve) => setTimeout(resolve, round % 5));
          await client.close();
          const results = await Promise.all(outcomes);
          assert.equal(settled, 20);
          results.forEach((result, i) => {
            if (typeof result === 'string') assert.equal(result, `r${round}-${i}`);
            else assert.ok(result instanceof FltportError && result.code === 'ERR_FLTPORT_CLOSED', String(result));
          });
          await assert.rejects(client.request(), { code: 'ERR_FLTPORT_CLOSED' });
        }
      });

      it('requests racing server.close() settle once each: their reply or STATUS_PORT_DISCONNECTED', async () => {
        for (let round = 0; round < 10; round += 1) {
          const { name, server, served } = await echoServer();
          const clients = await Promise.all(Array.from({ length: 3 }, () => LpcPort.connect(name)));
          track(...clients);
          const outcomes = Array.from({ length: 30 }, (_, i) =>
            clients[i % 3].request(Buffer.from(`s${i}`)).then(
              (reply) => reply.toString(),
              (error) => error,
            ),
          );
          await new Promise((resolve) => setTimeout(resolve, round % 5));
          await server.close();
          await served;
          const results = await Promise.all(outcomes);
          results.forEach((result, i) => {
            if (typeof result === 'string') assert.equal(result, `s${i}`);
            else assert.ok(result instanceof WinError && result.code === 'STATUS_PORT_DISCONNECTED', String(result));
          });
        }
      });

      it('a server that never answers: abort and close() settle the client calls; server.close() ends the waits', async () => {
        const name = uniqueName('silent');
        const server = track(await LpcServerPort.create(name));
        const next = pump(server);
        const connecting = LpcPort.connect(name);
        const connection = await (await next('connect')).accept();
        const client = track(await connecting);
        const controller = new AbortController();
        const aborted = client.request(Buffer.from('first'), { signal: controller.signal });
        assert.equal((await next('request')).data.toString(), 'first');
        controller.abort();
        await assert.rejects(aborted, { name: 'AbortError' });
        // The client port still works while the aborted request waits inside the kernel.
        const pending = client.request(Buffer.from('second'));
        assert.equal((await next('request')).data.toString(), 'second');
        await client.close();
        await assert.rejects(pending, { code: 'ERR_FLTPORT_CLOSED' });
        // Both requests still wait for replies in the kernel (so the client's handle is still
        // open): closing the server ends them, and the client's handle closes after them.
        await server.close();
        assert.equal(connection.closed, true);
        const again = track(await LpcServerPort.create(name));
        await again.close();
      });

      it('refuses oversized messages and connection info with RangeErrors before any call', async () => {
        await assert.rejects(async () => LpcServerPort.create(uniqueName('big'), { maxMessageBytes: MAX_LPC_MESSAGE_BYTES + 1 }), {
          code: 'ERR_OUT_OF_RANGE',
        });
        await assert.rejects(async () => LpcServerPort.create(uniqueName('big'), { maxConnectionInfoBytes: MAX_LPC_CONNECTION_INFO_BYTES + 1 }), {
          code: 'ERR_OUT_OF_RANGE',
        });
        const name = uniqueName('oversized');
        const server = track(await LpcServerPort.create(name));
        const next = pump(server);
        await assert.rejects(async () => LpcPort.connect(name, { connectionInfo: new Uint8Array(MAX_LPC_CONNECTION_INFO_BYTES + 1) }), {
          code: 'ERR_OUT_OF_RANGE',
        });
        const connecting = LpcPort.connect(name, { connectionInfo: new Uint8Array(MAX_LPC_CONNECTION_INFO_BYTES).fill(7) });
        const connect = await next('connect');
        assert.equal(connect.connectionInfo.length, MAX_LPC_CONNECTION_INFO_BYTES);
        await assert.rejects(async () => connect.accept(new Uint8Array(MAX_LPC_CONNECTION_INFO_BYTES + 1)), { code: 'ERR_OUT_OF_RANGE' });
        // The oversized answer was refused before the kernel saw it: the request is still open.
        await connect.accept(new Uint8Array(MAX_LPC_CONNECTION_INFO_BYTES).fill(9));
        const client = track(await connecting);
        assert.deepEqual(client.serverConnectionInfo, Buffer.alloc(MAX_LPC_CONNECTION_INFO_BYTES, 9));
        await assert.rejects(client.request(new Uint8Array(MAX_LPC_MESSAGE_BYTES + 1)), { code: 'ERR_OUT_OF_RANGE' });
        await assert.rejects(client.post(new Uint8Array(MAX_LPC_MESSAGE_BYTES + 1)), { code: 'ERR_OUT_OF_RANGE' });
        const replying = client.request(Buffer.from('ask'));
        const request = await next('request');
        await assert.rejects(async () => request.reply(new Uint8Array(MAX_LPC_MESSAGE_BYTES + 1)), { code: 'ERR_OUT_OF_RANGE' });
        await request.reply(Buffer.alloc(MAX_LPC_MESSAGE_BYTES, 1));
        assert.deepEqual(await replying, Buffer.alloc(MAX_LPC_MESSAGE_BYTES, 1));
      });

      it('checks view bounds on both sides, and views end with their port', async () => {
        for (const bytes of [0, MAX_LPC_VIEW_BYTES + 1, 1.5]) {
          await assert.rejects(async () => LpcPort.connect(uniqueName('view'), { view: { bytes } }), RangeError);
        }
        const { server, client, connection } = await connectedPair({ client: { view: { bytes: 4096 } }, accept: { view: { bytes: 8192 } } });
        track(client, server);
        for (const view of [client.view, client.serverView, connection.view, connection.clientView]) {
          const size = view.bytes;
          assert.throws(() => view.read(-1, 1), RangeError);
          assert.throws(() => view.read(size + 1, 0), RangeError);
          assert.throws(() => view.read(size - 1, 2), RangeError);
          assert.throws(() => view.write(size - 1, Buffer.alloc(2)), RangeError);
          assert.throws(() => view.write(-1, Buffer.alloc(1)), RangeError);
          assert.throws(() => view.write(0, 'text'), TypeError);
          view.write(size - 1, Buffer.from([0xab]));
          assert.deepEqual(view.read(size - 1, 1), Buffer.from([0xab]));
          assert.equal(view.read(size, 0).length, 0);
        }
        // The last byte each side wrote is the one the other side reads.
        assert.deepEqual(connection.clientView.read(client.view.bytes - 1, 1), Buffer.from([0xab]));
        connection.close();
        assert.throws(() => connection.view.read(0, 1), { code: 'ERR_FLTPORT_CLOSED' });
        await client.close();
        assert.throws(() => client.view.read(0, 1), { code: 'ERR_FLTPORT_CLOSED' });
      });

      it('leaves no port, view or handle behind after 200 connections come and go', async function () {
        const standIn = process[Symbol.for('fltport.lpcStandIn')];
        if (standIn === undefined) {
          // Counting needs the stand-in's counters; on Windows this test cannot see the kernel's.
          console.log('      skipped: it counts with the LPC stand-in, which is not loaded');
          this.skip();
        }
        const { name, seen } = await echoServer(65536);
        let cycles = 0;
        const cycle = async () => {
          const client = await LpcPort.connect(name, { view: { bytes: 65536 } });
          client.view.write(0, Buffer.from('x'));
          assert.equal((await client.request(Buffer.from('x'))).toString(), 'x');
          await client.close();
          cycles += 1;
        };
        // Warm up (thread-pool threads, first-use allocations), then count.
        for (let i = 0; i < 10; i += 1) await cycle();
        await until(() => seen.closed === cycles);
        const before = standIn.counts();
        for (let i = 0; i < 200; i += 1) await cycle();
        await until(() => seen.closed === cycles);
        const after = standIn.counts();
        assert.equal(after.ports, before.ports, 'stand-in ports open');
        assert.equal(after.views, before.views, 'views mapped');
        // Thread-pool threads come and go; one leaked handle per connection would be 200 more.
        assert.ok(after.handles - before.handles < 100, `process handles ${before.handles} -> ${after.handles}`);
      });
    });

    describe('across two processes', () => {
      it('serves a client process, then sees it die', async () => {
        const name = uniqueName('xclient');
        const server = track(await LpcServerPort.create(name));
        const next = pump(server);
        const { processHandle, receive } = spawnChild('client', name);
        try {
          const connect = await next('connect');
          assert.equal(connect.clientId.processId, processHandle.pid);
          assert.equal(connect.connectionInfo.toString(), 'child-client-info');
          const connection = await connect.accept(Buffer.from('parent'));
          assert.deepEqual(await receive(), { op: 'connected', info: 'parent' });

          processHandle.send({ op: 'request', data: 'ping' });
          const request = await next('request');
          assert.equal(request.data.toString(), 'ping');
          await request.reply(Buffer.from('pong'));
          assert.deepEqual(await receive(), { op: 'reply', data: 'pong' });

          processHandle.send({ op: 'post', data: 'fire and forget' });
          assert.equal((await next('datagram')).data.toString(), 'fire and forget');

          processHandle.kill();
          // The client port dies with its process: LPC_PORT_CLOSED (LPC_CLIENT_DIED only for
          // threads registered with a terminate port; UNCONFIRMED which one Windows sends here).
          const { value } = await server.events().next();
          assert.ok(['port-closed', 'client-died'].includes(value.type), value.type);
          assert.equal(value.connection, connection);
        } finally {
          processHandle.kill();
        }
      });

      it('a client killed while its connection is accepted leaves no connection behind', async () => {
        // The race of issue 13 section 7: a client that dies between NtAcceptConnectPort and the
        // JS side registering the connection. Each round ends with accept() rejecting, or with
        // the connection's port-closed event; either way nothing stays open.
        const name = uniqueName('xrace');
        const server = track(await LpcServerPort.create(name));
        const events = server.events();
        const nextOf = async (types) => {
          // A round whose accept() failed may still see its client's port-closed: skipped here.
          for (;;) {
            const { value } = await events.next();
            if (types.includes(value.type)) return value;
          }
        };
        for (let round = 0; round < 10; round += 1) {
          const { processHandle } = spawnChild('client', name);
          try {
            const connect = await nextOf(['connect']);
            const accepting = connect.accept(Buffer.from('parent'));
            processHandle.kill();
            let connection;
            try {
              connection = await accepting;
            } catch (error) {
              assert.ok(error instanceof WinError || (error instanceof FltportError && error.code === 'ERR_FLTPORT_CLOSED'), String(error));
              continue;
            }
            let closed;
            do closed = await nextOf(['port-closed', 'client-died']);
            while (closed.connection !== connection);
            assert.equal(connection.closed, true);
          } finally {
            processHandle.kill();
          }
        }
      });

      it('talks to a server process; a request pending when it dies fails (UNCONFIRMED: STATUS_PORT_DISCONNECTED)', async () => {
        const name = uniqueName('xserver');
        const { processHandle, receive } = spawnChild('server', name);
        try {
          assert.deepEqual(await receive(), { op: 'listening' });
          const client = track(await LpcPort.connect(name, { connectionInfo: Buffer.from('parent-info-long-enough') }));
          assert.equal(client.serverConnectionInfo.toString(), 'child-server');
          assert.equal((await client.request(Buffer.from('one'))).toString(), 'echo:one');
          assert.deepEqual(await receive(), { op: 'request', data: 'one' });

          const hanging = client.request(Buffer.from('hang'));
          assert.deepEqual(await receive(), { op: 'request', data: 'hang' });
          processHandle.kill();
          await assert.rejects(hanging, (error) => error instanceof WinError && error.code === 'STATUS_PORT_DISCONNECTED');
        } finally {
          processHandle.kill();
        }
      });
    });
  });
}
