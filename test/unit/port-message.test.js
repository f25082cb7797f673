'use strict';
// The PORT_MESSAGE codec (lib/port-message.ts): pure TypeScript, so it runs on Linux.
const assert = require('node:assert/strict');
const {
  encodePortMessage,
  decodePortMessage,
  LpcMessageType,
  LpcMessageFlags,
  PORT_MESSAGE_BYTES,
  PORT_MAXIMUM_MESSAGE_LENGTH,
  MAX_LPC_MESSAGE_BYTES,
  MAX_LPC_CONNECTION_INFO_BYTES,
  LpcPort,
  LpcServerPort,
} = require('fltport');

describe('PORT_MESSAGE constants (x64)', () => {
  it('has the 64-bit sizes', () => {
    assert.equal(PORT_MESSAGE_BYTES, 40);
    assert.equal(PORT_MAXIMUM_MESSAGE_LENGTH, 512);
    assert.equal(MAX_LPC_MESSAGE_BYTES, 472);
    assert.equal(MAX_LPC_CONNECTION_INFO_BYTES, 16 * 8);
  });

  it('numbers the message types 1..10', () => {
    assert.deepEqual(Object.values(LpcMessageType), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    assert.equal(LpcMessageType.CONNECTION_REQUEST, 10);
    assert.equal(LpcMessageType.CLIENT_DIED, 6);
    assert.deepEqual({ ...LpcMessageFlags }, { CONTINUATION_REQUIRED: 0x2000, NO_IMPERSONATE: 0x4000, KERNELMODE_MESSAGE: 0x8000 });
  });
});

describe('encodePortMessage', () => {
  it('lays out every header field at its x64 offset', () => {
    const bytes = encodePortMessage({
      type: LpcMessageType.REPLY,
      flags: LpcMessageFlags.NO_IMPERSONATE,
      dataInfoOffset: 0x1234,
      clientId: { processId: 0x1111, threadId: 0x2222 },
      messageId: 0xdeadbeef,
      callbackId: 0x77,
      data: Uint8Array.of(1, 2, 3),
    });
    assert.equal(bytes.length, 43);
    assert.equal(bytes.readUInt16LE(0), 3); // DataLength
    assert.equal(bytes.readUInt16LE(2), 43); // TotalLength
    assert.equal(bytes.readUInt16LE(4), 0x4002); // Type with its flag
    assert.equal(bytes.readUInt16LE(6), 0x1234); // DataInfoOffset
    assert.equal(bytes.readBigUInt64LE(8), 0x1111n); // ClientId.UniqueProcess
    assert.equal(bytes.readBigUInt64LE(16), 0x2222n); // ClientId.UniqueThread
    assert.equal(bytes.readUInt32LE(24), 0xdeadbeef); // MessageId
    assert.equal(bytes.readUInt32LE(28), 0); // padding
    assert.equal(bytes.readBigUInt64LE(32), 0x77n); // CallbackId
    assert.deepEqual([...bytes.subarray(40)], [1, 2, 3]);
  });

  it('zeroes the header by default (the kernel sets the type of requests and datagrams)', () => {
    const bytes = encodePortMessage({});
    assert.equal(bytes.length, 40);
    assert.ok(bytes.subarray(4).every((b) => b === 0));
    assert.equal(bytes.readUInt16LE(2), 40);
  });

  it('takes payloads of 0..472 bytes and refuses 473 with a RangeError', () => {
    for (const size of [0, 1, 100, 471, 472]) {
      const bytes = encodePortMessage({ data: new Uint8Array(size).fill(9) });
      assert.equal(bytes.length, 40 + size);
    }
    assert.throws(() => encodePortMessage({ data: new Uint8Array(473) }), (error) => {
      assert.ok(error instanceof RangeError);
      assert.equal(error.code, 'ERR_OUT_OF_RANGE');
      assert.match(error.message, /message\.data\.byteLength must be at most 472/);
      return true;
    });
  });

  it("honours a port's smaller limit", () => {
    assert.equal(encodePortMessage({ data: new Uint8Array(60) }, 100).length, 100);
    assert.throws(() => encodePortMessage({ data: new Uint8Array(61) }, 100), RangeError);
  });

  it('writes a 64-bit ClientViewSize', () => {
    const bytes = encodePortMessage({ type: LpcMessageType.CONNECTION_REQUEST, clientViewSize: 0x1_0000_0000n });
    assert.equal(bytes.readBigUInt64LE(32), 0x1_0000_0000n);
  });

  const bad = [
    ['data that is an array', { data: [1, 2] }, TypeError],
    ['a type above 255', { type: 256 }, RangeError],
    ['a negative type', { type: -1 }, RangeError],
    ['flags outside the high byte', { flags: 0x2001 }, RangeError],
    ['a fractional messageId', { messageId: 1.5 }, RangeError],
    ['a messageId above 32 bits', { messageId: 2 ** 32 }, RangeError],
    ['a string processId', { clientId: { processId: '1', threadId: 2 } }, TypeError],
    ['both clientViewSize and callbackId', { clientViewSize: 1n, callbackId: 1 }, TypeError],
    ['a negative clientViewSize', { clientViewSize: -1n }, RangeError],
  ];
  for (const [title, init, type] of bad) {
    it(`throws a ${type.name} for ${title}`, () => {
      assert.throws(() => encodePortMessage(init), (error) => error instanceof type && typeof error.code === 'string');
    });
  }
});

describe('decodePortMessage', () => {
  it('round-trips what encodePortMessage wrote', () => {
    for (const size of [0, 1, 39, 40, 255, 472]) {
      const data = Buffer.alloc(size);
      for (let i = 0; i < size; i += 1) data[i] = (i * 7) & 0xff;
      const init = {
        type: LpcMessageType.REQUEST,
        flags: LpcMessageFlags.KERNELMODE_MESSAGE | LpcMessageFlags.CONTINUATION_REQUIRED,
        clientId: { processId: 4, threadId: 0xffff_fffc },
        messageId: 99,
        callbackId: 0xffff_ffff,
        data,
      };
      const message = decodePortMessage(encodePortMessage(init));
      assert.equal(message.dataLength, size);
      assert.equal(message.totalLength, 40 + size);
      assert.equal(message.type, LpcMessageType.REQUEST);
      assert.equal(message.flags, 0xa000);
      assert.equal(message.dataInfoOffset, 0);
      assert.deepEqual(message.clientId, init.clientId);
      assert.equal(message.messageId, 99);
      assert.equal(message.callbackId, 0xffff_ffff);
      assert.equal(message.clientViewSize, 0xffff_ffffn);
      assert.deepEqual(message.data, data);
    }
  });

  it('decodes a connection request as the kernel delivers it (DataLength = info size)', () => {
    const info = Buffer.from('hello server');
    const bytes = Buffer.alloc(40 + info.length);
    bytes.writeUInt16LE(info.length, 0);
    bytes.writeUInt16LE(40 + info.length, 2);
    bytes.writeUInt16LE(LpcMessageType.CONNECTION_REQUEST, 4);
    bytes.writeBigUInt64LE(1234n, 8);
    bytes.writeBigUInt64LE(5678n, 16);
    bytes.writeUInt32LE(42, 24);
    bytes.writeBigUInt64LE(1n << 20n, 32);
    info.copy(bytes, 40);
    const message = decodePortMessage(bytes);
    assert.equal(message.type, LpcMessageType.CONNECTION_REQUEST);
    assert.deepEqual(message.clientId, { processId: 1234, threadId: 5678 });
    assert.equal(message.messageId, 42);
    assert.equal(message.clientViewSize, 1n << 20n);
    assert.equal(message.data.toString(), 'hello server');
  });

  it('ignores bytes past TotalLength (a receive buffer is larger than its message)', () => {
    const bytes = Buffer.concat([encodePortMessage({ data: Buffer.from('ab') }), Buffer.alloc(100, 0xff)]);
    const message = decodePortMessage(bytes);
    assert.equal(message.totalLength, 42);
    assert.equal(message.data.toString(), 'ab');
  });

  it('decodes from a plain Uint8Array at an offset', () => {
    const encoded = encodePortMessage({ messageId: 7, data: Uint8Array.of(5) });
    const backing = new Uint8Array(encoded.length + 8);
    backing.set(encoded, 8);
    const message = decodePortMessage(backing.subarray(8));
    assert.equal(message.messageId, 7);
    assert.deepEqual([...message.data], [5]);
  });

  it('refuses fewer than 40 bytes', () => {
    assert.throws(() => decodePortMessage(new Uint8Array(39)), (error) => error instanceof RangeError && /at least 40/.test(error.message));
  });

  it('refuses a TotalLength beyond the bytes given', () => {
    const bytes = encodePortMessage({ data: new Uint8Array(10) }).subarray(0, 45);
    assert.throws(() => decodePortMessage(bytes), /TotalLength/);
  });

  it('refuses a DataLength that does not fit in TotalLength', () => {
    const bytes = encodePortMessage({ data: new Uint8Array(10) });
    bytes.writeUInt16LE(11, 0);
    assert.throws(() => decodePortMessage(bytes), (error) => error instanceof RangeError && /DataLength/.test(error.message));
  });

  it('refuses what is not a Uint8Array', () => {
    assert.throws(() => decodePortMessage('x'.repeat(40)), TypeError);
  });
});

describe('LPC argument checks before any native call', () => {
  // Each case must be refused before the platform check, so these run on Linux.
  const badConnects = [
    ['a non-string name', [42], TypeError, /name must be a string/],
    ['an empty name', [''], TypeError, /must not be empty/],
    ['connectionInfo that is a string', ['\\P', { connectionInfo: 'x' }], TypeError, /options\.connectionInfo/],
    ['connectionInfo over 128 bytes', ['\\P', { connectionInfo: new Uint8Array(129) }], RangeError, /options\.connectionInfo\.byteLength must be at most 128/],
    ['an unknown impersonation level', ['\\P', { securityQos: { impersonationLevel: 'root' } }], TypeError, /impersonationLevel/],
    ['a securityQos that is not an object', ['\\P', { securityQos: 3 }], TypeError, /options\.securityQos/],
    ['a numeric dynamicTracking', ['\\P', { securityQos: { dynamicTracking: 1 } }], TypeError, /dynamicTracking/],
    ['a serverSid that is not a string', ['\\P', { serverSid: 18 }], TypeError, /options\.serverSid/],
    ['a view without bytes', ['\\P', { view: {} }], TypeError, /options\.view\.bytes/],
    ['a view of 0 bytes', ['\\P', { view: { bytes: 0 } }], RangeError, /options\.view\.bytes/],
    ['a view over 1 GiB', ['\\P', { view: { bytes: 2 ** 30 + 1 } }], RangeError, /options\.view\.bytes/],
    ['a signal that is not an AbortSignal', ['\\P', { signal: {} }], TypeError, /options\.signal/],
  ];
  for (const [title, args, type, message] of badConnects) {
    it(`LpcPort.connect rejects ${title}`, async () => {
      await assert.rejects(LpcPort.connect(...args), (error) => {
        assert.ok(error instanceof type, `expected ${type.name}, got ${error}`);
        assert.match(error.message, message);
        return true;
      });
    });
  }

  const badCreates = [
    ['a missing name', [], TypeError, /name/],
    ['maxMessageBytes over 472', ['\\P', { maxMessageBytes: 473 }], RangeError, /options\.maxMessageBytes/],
    ['maxConnectionInfoBytes over 128', ['\\P', { maxConnectionInfoBytes: 129 }], RangeError, /options\.maxConnectionInfoBytes/],
    ['a fractional maxMessageBytes', ['\\P', { maxMessageBytes: 1.5 }], RangeError, /options\.maxMessageBytes/],
  ];
  for (const [title, args, type, message] of badCreates) {
    it(`LpcServerPort.create rejects ${title}`, async () => {
      await assert.rejects(LpcServerPort.create(...args), (error) => {
        assert.ok(error instanceof type, `expected ${type.name}, got ${error}`);
        assert.match(error.message, message);
        return true;
      });
    });
  }
});

// The JS layer of lib/lpc-port.ts driven by a stand-in for the addon: no live port exists on
// Linux or under Wine, so this is where settle-once and close semantics are pinned.
const { FltportError, WinError, AbortError } = require('fltport');

function deferred() {
  let resolve;
  let reject;
  const promise = new Promise((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

function fakeClient() {
  const calls = [];
  const native = {
    closed: 0,
    calls,
    request(message) {
      const d = deferred();
      calls.push({ op: 'request', message, ...d });
      return d.promise;
    },
    post(message) {
      const d = deferred();
      calls.push({ op: 'post', message, ...d });
      return d.promise;
    },
    readView: (view, offset, length) => Buffer.alloc(length, view + 1),
    writeView(view, offset, data) {
      calls.push({ op: 'write', view, offset, data });
    },
    close() {
      native.closed += 1;
    },
  };
  const port = new LpcPort('\\RPC Control\\Fake', {
    port: native,
    maxMessageLength: 200,
    serverConnectionInfo: Buffer.from('hi'),
    viewBytes: 4096,
    serverViewBytes: 0,
  });
  return { port, native };
}

function fakeServer() {
  const calls = [];
  let nextId = 1;
  const native = {
    calls,
    closes: 0,
    closedConnections: [],
    start(onMessage, onEnd) {
      native.onMessage = onMessage;
      native.onEnd = onEnd;
    },
    accept(message, viewBytes) {
      calls.push({ op: 'accept', message, viewBytes });
      return Promise.resolve({ connectionId: nextId++, viewBytes, clientViewBytes: 0 });
    },
    refuse(message) {
      calls.push({ op: 'refuse', message });
      return Promise.resolve();
    },
    complete(id) {
      calls.push({ op: 'complete', id });
      return Promise.resolve();
    },
    reply(id, message) {
      const d = deferred();
      calls.push({ op: 'reply', id, message, ...d });
      return d.promise;
    },
    closeConnection(id) {
      native.closedConnections.push(id);
    },
    readView: (id, view, offset, length) => Buffer.alloc(length),
    writeView() {},
    close() {
      native.closes += 1;
      return Promise.resolve();
    },
    ref() {},
    unref() {},
  };
  const server = new LpcServerPort('\\RPC Control\\FakeServer', native, 100, 128);
  return { server, native };
}

const connectionRequest = (info = 'ci', messageId = 5) =>
  encodePortMessage({ type: LpcMessageType.CONNECTION_REQUEST, clientId: { processId: 10, threadId: 11 }, messageId, data: Buffer.from(info) });

describe('LpcPort settle-once and close semantics (stand-in addon)', () => {
  it('sends whole PORT_MESSAGEs and returns the reply data', async () => {
    const { port, native } = fakeClient();
    assert.equal(port.maxMessageBytes, 160);
    assert.equal(port.serverConnectionInfo.toString(), 'hi');
    const reply = port.request(Buffer.from('ping'));
    const sent = decodePortMessage(native.calls[0].message);
    assert.equal(sent.type, 0);
    assert.equal(sent.data.toString(), 'ping');
    native.calls[0].resolve(encodePortMessage({ type: LpcMessageType.REPLY, data: Buffer.from('pong') }));
    assert.equal((await reply).toString(), 'pong');
  });

  it('refuses a payload over maxMessageBytes with a RangeError before any call', async () => {
    const { port, native } = fakeClient();
    await assert.rejects(port.request(new Uint8Array(161)), (error) => error instanceof RangeError && /at most 160/.test(error.message));
    await assert.rejects(port.post(new Uint8Array(161)), RangeError);
    assert.equal(native.calls.length, 0);
  });

  it('close() rejects pending calls once with ERR_FLTPORT_CLOSED, and every later call', async () => {
    const { port, native } = fakeClient();
    const pending = [port.request(), port.post()];
    await port.close();
    for (const result of await Promise.allSettled(pending)) {
      assert.equal(result.status, 'rejected');
      assert.ok(result.reason instanceof FltportError);
      assert.equal(result.reason.code, 'ERR_FLTPORT_CLOSED');
    }
    native.calls[0].resolve(encodePortMessage({})); // a late completion changes nothing
    await assert.rejects(port.request(), { code: 'ERR_FLTPORT_CLOSED' });
    assert.throws(() => port.view.read(0, 1), { code: 'ERR_FLTPORT_CLOSED' });
    await port.close();
    assert.equal(native.closed, 1);
    assert.equal(port.closed, true);
  });

  it('ends the port with STATUS_PORT_DISCONNECTED when the server went away', async () => {
    const { port, native } = fakeClient();
    const first = port.request();
    const second = port.request();
    native.calls[0].reject(Object.assign(new Error('x'), { syscall: 'NtRequestWaitReplyPort', ntstatus: 0xc0000037 }));
    for (const attempt of [first, second, port.post()]) {
      await assert.rejects(attempt, (error) => error instanceof WinError && error.code === 'STATUS_PORT_DISCONNECTED');
    }
    assert.equal(native.closed, 1);
  });

  it('an aborted request rejects at once with an AbortError', async () => {
    const { port } = fakeClient();
    const controller = new AbortController();
    const attempt = port.request(undefined, { signal: controller.signal });
    controller.abort();
    await assert.rejects(attempt, AbortError);
  });

  it('bounds-checks view reads and writes', () => {
    const { port, native } = fakeClient();
    assert.equal(port.view.bytes, 4096);
    assert.equal(port.serverView, null);
    assert.equal(port.view.read(4000).length, 96);
    assert.throws(() => port.view.read(4090, 7), RangeError);
    assert.throws(() => port.view.write(4095, Buffer.alloc(2)), RangeError);
    assert.throws(() => port.view.write(-1, Buffer.alloc(1)), RangeError);
    port.view.write(4094, Buffer.alloc(2));
    assert.deepEqual(native.calls.at(-1).offset, 4094);
  });
});

describe('LpcServerPort events and close semantics (stand-in addon)', () => {
  it('turns a connection request into a connect event; accept answers with the request header', async () => {
    const { server, native } = fakeServer();
    const events = server.events();
    native.onMessage(0, connectionRequest('hello'));
    const { value: event } = await events.next();
    assert.equal(event.type, 'connect');
    assert.equal(event.connectionInfo.toString(), 'hello');
    assert.deepEqual(event.clientId, { processId: 10, threadId: 11 });
    const connection = await event.accept(Buffer.from('welcome'), { view: { bytes: 8192 } });
    const answer = decodePortMessage(native.calls[0].message);
    assert.equal(answer.messageId, 5);
    assert.deepEqual(answer.clientId, { processId: 10, threadId: 11 });
    assert.equal(answer.data.toString(), 'welcome');
    assert.equal(native.calls[0].viewBytes, 8192);
    assert.deepEqual(native.calls[1], { op: 'complete', id: connection.id });
    assert.equal(connection.view.bytes, 8192);
    await assert.rejects(event.refuse(), { code: 'ERR_FLTPORT_ALREADY_REPLIED' });
    await assert.rejects(
      (async () => {
        native.onMessage(0, connectionRequest('x', 6));
        const { value } = await events.next();
        return value.accept(new Uint8Array(129));
      })(),
      RangeError,
    );
    await server.close();
  });

  it('delivers requests with reply(), datagrams, and port-closed that closes the connection', async () => {
    const { server, native } = fakeServer();
    const events = server.events();
    native.onMessage(0, connectionRequest());
    const connection = await (await events.next()).value.accept();
    native.onMessage(connection.id, encodePortMessage({ type: LpcMessageType.REQUEST, clientId: { processId: 10, threadId: 12 }, messageId: 77, callbackId: 3, data: Buffer.from('q') }));
    native.onMessage(connection.id, encodePortMessage({ type: LpcMessageType.DATAGRAM, data: Buffer.from('d') }));
    native.onMessage(999, encodePortMessage({ type: LpcMessageType.DATAGRAM })); // unknown connection: dropped

    const request = (await events.next()).value;
    assert.equal(request.type, 'request');
    assert.equal(request.connection, connection);
    assert.equal(request.data.toString(), 'q');
    await assert.rejects(request.reply(new Uint8Array(101)), RangeError);
    const replying = request.reply(Buffer.from('a'));
    const reply = native.calls.find((call) => call.op === 'reply');
    const decoded = decodePortMessage(reply.message);
    assert.equal(reply.id, connection.id);
    assert.equal(decoded.type, LpcMessageType.REPLY);
    assert.equal(decoded.messageId, 77);
    assert.equal(decoded.callbackId, 3);
    assert.deepEqual(decoded.clientId, { processId: 10, threadId: 12 });
    reply.resolve();
    await replying;
    await assert.rejects(request.reply(), { code: 'ERR_FLTPORT_ALREADY_REPLIED' });

    assert.equal((await events.next()).value.type, 'datagram');
    native.onMessage(connection.id, encodePortMessage({ type: LpcMessageType.PORT_CLOSED }));
    const closed = (await events.next()).value;
    assert.equal(closed.type, 'port-closed');
    assert.equal(connection.closed, true);
    assert.deepEqual(native.closedConnections, [connection.id]);
    await server.close();
    assert.deepEqual(await events.next(), { value: undefined, done: true });
  });

  it('close() settles a pending reply once, ends every iterator and rejects later calls', async () => {
    const { server, native } = fakeServer();
    const events = server.events();
    native.onMessage(0, connectionRequest());
    const connect = (await events.next()).value;
    const connection = await connect.accept();
    native.onMessage(connection.id, encodePortMessage({ type: LpcMessageType.REQUEST, messageId: 1 }));
    const request = (await events.next()).value;
    const replying = request.reply();
    const waiting = events.next();
    const other = server.events().next();
    await server.close();
    await assert.rejects(replying, { code: 'ERR_FLTPORT_CLOSED' });
    assert.deepEqual(await waiting, { value: undefined, done: true });
    assert.deepEqual(await other, { value: undefined, done: true });
    native.onMessage(0, connectionRequest('late', 9)); // after close: dropped
    assert.deepEqual(await server.events().next(), { value: undefined, done: true });
    assert.equal(connection.closed, true);
    await server.close();
    assert.equal(native.closes, 1);
  });

  it('a receive failure ends the iterators with the WinError', async () => {
    const { server, native } = fakeServer();
    const events = server.events();
    const waiting = events.next();
    native.onEnd(Object.assign(new Error('x'), { syscall: 'NtReplyWaitReceivePortEx', ntstatus: 0xc0000008 }));
    await assert.rejects(waiting, (error) => error instanceof WinError && error.code === 'STATUS_INVALID_HANDLE');
    assert.equal(server.closed, true);
    assert.equal(native.closes, 1);
  });

  it('an aborted signal ends events() with an AbortError', async () => {
    const { server } = fakeServer();
    const controller = new AbortController();
    const waiting = server.events({ signal: controller.signal }).next();
    controller.abort();
    await assert.rejects(waiting, AbortError);
    await server.close();
  });
});
