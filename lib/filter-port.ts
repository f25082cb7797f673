// FilterPort: a connection to a minifilter's communication port (fltlib.dll).
import { loadNative } from '../binding/loader';
import type { NativeFilterPort, NativeMessage, NativeMessageStream } from '../binding/native';
import { AbortError, FltportError, WinError, abortErrorFor, failureOf, fromNative, invalidArgType, invalidArgValue, invalidReturnValue, outOfRange } from './errors';
import { settleOnce } from './abort';
import { FilterMessage, type SendReply, claimReply } from './filter-message';
import { type StructType, checkOptionalType, decodeStruct, structSize, toPayload } from './structs';
import {
  MAX_CONTEXT_BYTES,
  MAX_PAYLOAD_BYTES,
  checkBytes,
  checkOptionalBoolean,
  checkOptionalBytes,
  checkOptionalFunction,
  checkOptionalInteger,
  checkOptionalSignal,
  checkOptionsObject,
  checkPortName,
} from './validate';

/** sizeof(FILTER_MESSAGE_HEADER), which every read buffer starts with. */
const MESSAGE_HEADER_BYTES = 16;
/** ERROR_INVALID_HANDLE as an HRESULT: how user mode sees STATUS_PORT_DISCONNECTED. */
const HRESULT_INVALID_HANDLE = 0x80070006;
/** ERROR_INSUFFICIENT_BUFFER as an HRESULT: a read too small for the message waiting. */
const HRESULT_INSUFFICIENT_BUFFER = 0x8007007a;
/**
 * STATUS_UNSUCCESSFUL: the reply status serve() sends, with the fail-safe verdict as payload, when a
 * handler throws or returns what cannot be a reply.
 */
export const HANDLER_FAILED_STATUS = 0xc0000001;
const DEFAULT_BUFFER_BYTES = 16 * 1024;
/** How far messages() and serve() grow a read for one larger message, by default. */
const DEFAULT_MAX_BUFFER_BYTES = 1024 * 1024;
const DEFAULT_PENDING = 16;
const MAX_PENDING = 1024;

export interface FilterConnectOptions {
  /** Connection context handed to the minifilter's ConnectNotify (at most 0xFFE8 bytes). */
  context?: Uint8Array;
  /** FLT_PORT_FLAG_SYNC_HANDLE: a handle without overlapped I/O; such a port can send but not receive. */
  syncHandle?: boolean;
  /** Let child processes inherit the port handle; only with syncHandle (an overlapped handle is bound to this process's thread pool). */
  inheritHandle?: boolean;
  /** Aborting rejects at once; a connection that completes later is closed again. */
  signal?: AbortSignal;
}

export interface SendOptions {
  /** Size of the output buffer handed to MessageNotify (default 0, or the size of replyType; never less than that). */
  replyBytes?: number;
  /** Encode `data` with this koffi type when it is an object (a Uint8Array is always sent as it is). */
  type?: StructType;
  /** Decode the output with this koffi type; send() then resolves with the object. */
  replyType?: StructType;
  /** Rejects at once; the call already inside the kernel runs to its end and its result is dropped. */
  signal?: AbortSignal;
}

export interface ReceiveOptions {
  /** Largest payload accepted, header excluded (default 16 KiB). */
  bufferBytes?: number;
  /** Decode each message's data with this koffi type (message.value). */
  type?: StructType;
  signal?: AbortSignal;
}

export interface MessagesOptions<T = unknown> extends ReceiveOptions {
  /** Reads kept outstanding in the kernel (default 16). */
  pending?: number;
  /**
   * A message larger than bufferBytes: its read's buffer doubles up to this payload size
   * (default 1 MiB, at least bufferBytes) and the message is delivered.
   */
  maxBufferBytes?: number;
  /**
   * Called with a message that could not be read (larger than maxBufferBytes: a WinError
   * ERROR_INSUFFICIENT_BUFFER or ERROR_MORE_DATA from FilterGetMessage, whose `bufferBytes` is the
   * largest payload tried); the loop goes on. `message` is undefined then. Without onError, a
   * process warning.
   */
  onError?: (error: unknown, message: FilterMessage<T> | undefined) => void;
}

/**
 * The agent's fail-safe verdict, the payload of every HANDLER_FAILED_STATUS reply: bytes, an object
 * encoded with `replyType` (both checked when serve() starts), or a function giving either for
 * one failed message. It is zero-padded to the message's `replyBytes`.
 */
export type FailureReply<T = unknown> = Uint8Array | object | ((message: FilterMessage<T>, error: unknown) => Uint8Array | object);

export interface ServeOptions<T = unknown> extends MessagesOptions<T> {
  /** Handlers running at once (default: pending). */
  concurrency?: number;
  /** Encode the handlers' results with this koffi type when they are objects (a Uint8Array is sent as it is). */
  replyType?: StructType;
  /** The payload of a failed handler's reply (default: `replyBytes` zero bytes). */
  failureReply?: FailureReply<T>;
  /**
   * Called with a handler's error (the message then gets HANDLER_FAILED_STATUS), a failureReply's,
   * a reply that could not be sent, or a message that could not be read (then `message` is
   * undefined, see MessagesOptions).
   */
  onError?: (error: unknown, message: FilterMessage<T> | undefined) => void;
}

export interface ServeStats {
  received: number;
  /** Replies serve() sent and the kernel took (those a handler sent with message.reply() are its own). */
  replied: number;
  /** Replies that came after the kernel stopped waiting (ERROR_FLT_NO_WAITER_FOR_REPLY). */
  lateReplies: number;
  /** Replies serve() could not send (the port closed or disconnected, or the call failed); each also goes to onError. */
  unsentReplies: number;
  /**
   * Handlers that threw, returned what cannot be a reply, or returned undefined for a message
   * that expects a reply without replying themselves (answered with HANDLER_FAILED_STATUS).
   */
  failed: number;
}

export type MessageHandler<T> = (message: FilterMessage<T>) => unknown;

interface Pending {
  fail(error: unknown): void;
}

/** One loop's messages (see #openInbox). */
interface Inbox {
  /**
   * The next message; undefined when none is waiting (then wait with onArrival()), null once the
   * port is closed. Throws the AbortError once the signal has aborted, and the stream's failure.
   */
  take(): NativeMessage | null | undefined;
  /** Calls `callback` once, when a message, the stream's end or the abort arrives. */
  onArrival(callback: () => void): void;
  /** Stops the reads; messages read but not taken go to the next reader. */
  leave(): void;
  /**
   * With holdForReply (serve()): whether `message` holds its read until its reply, because it is
   * one of the stream's own and expects a reply. Its reply then names `stream`, which re-arms the
   * read after the reply; release() gives the read back without one.
   */
  holdsRead(message: NativeMessage): boolean;
  readonly stream: NativeMessageStream;
  release(): void;
}

export class FilterPort {
  readonly name: string;
  readonly #native: NativeFilterPort;
  /** Set once the port is closed or disconnected: what every later call rejects with. */
  #endError: Error | undefined;
  #closing: Promise<void> | undefined;
  readonly #pending = new Set<Pending>();
  /** Messages read but not handed out (their reader gave up); the next reader gets them. */
  readonly #unclaimed: NativeMessage[] = [];
  /** Readers waiting now (receive() calls, messages() loops): a message whose reader gave up goes to them first. */
  readonly #readers = new Set<(message: NativeMessage) => void>();
  #nextReadId = 0;
  /** FilterMessage.reply(): one function for every message. */
  readonly #sendReply: SendReply = (id, status, payload) =>
    this.#track('FilterReplyMessage', () => this.#native.reply(id, status, payload, false, null), undefined);

  private constructor(name: string, native: NativeFilterPort) {
    this.name = name;
    this.#native = native;
  }

  /** FilterConnectCommunicationPort, run on a Windows thread-pool thread. */
  static async connect(name: string, options?: FilterConnectOptions): Promise<FilterPort> {
    checkPortName(name);
    const raw = checkOptionsObject(options);
    const context = checkOptionalBytes(raw.context, 'options.context', MAX_CONTEXT_BYTES);
    const syncHandle = checkOptionalBoolean(raw.syncHandle, 'options.syncHandle') ?? false;
    const inheritHandle = checkOptionalBoolean(raw.inheritHandle, 'options.inheritHandle') ?? false;
    if (inheritHandle && !syncHandle) {
      throw invalidArgValue('options.inheritHandle', 'requires options.syncHandle: an overlapped handle bound to thread-pool I/O cannot be shared with a child process');
    }
    const signal = checkOptionalSignal(raw.signal);
    if (signal?.aborted) throw abortErrorFor(signal);

    const connecting = loadNative()
      .filterConnect(name, context ?? null, syncHandle, inheritHandle)
      .then((native) => new FilterPort(name, native), (error: unknown) => Promise.reject(fromNative(error)));
    if (signal === undefined) return connecting;
    return settleOnce(connecting, signal, (port) => void port.close());
  }

  /** True after close() or once the kernel side disconnected. */
  get closed(): boolean {
    return this.#endError !== undefined;
  }

  /** FilterSendMessage: runs the minifilter's MessageNotify; resolves with exactly lpBytesReturned bytes. */
  send(data: Uint8Array, options?: SendOptions & { replyType?: undefined }): Promise<Buffer>;
  send<R>(data: Uint8Array | object, options: SendOptions & { replyType: StructType }): Promise<R>;
  send(data: Uint8Array | object, options?: SendOptions): Promise<Buffer | object>;
  send(data: unknown, options?: SendOptions): Promise<unknown> {
    // Not an async function: a send in flight then holds no suspended frame of its own.
    let output: Promise<Buffer>;
    let replyType: StructType | undefined;
    try {
      const raw = checkOptionsObject(options);
      const type = checkOptionalType(raw.type, 'options.type');
      replyType = checkOptionalType(raw.replyType, 'options.replyType');
      const input = toPayload(data, type, 'data');
      const replyTypeBytes = replyType === undefined ? 0 : structSize(replyType, 'options.replyType');
      const replyBytes = checkOptionalInteger(raw.replyBytes, 'options.replyBytes', replyTypeBytes, MAX_PAYLOAD_BYTES) ?? replyTypeBytes;
      const signal = checkOptionalSignal(raw.signal);
      output = this.#track('FilterSendMessage', () => this.#native.send(input, replyBytes), signal);
    } catch (error) {
      return Promise.reject(error);
    }
    if (replyType === undefined) return output;
    const decodeWith = replyType;
    return output.then((bytes) => decodeStruct(decodeWith, bytes, 'options.replyType'));
  }

  /** One FilterGetMessage. */
  async receive<T = unknown>(options?: ReceiveOptions): Promise<FilterMessage<T>> {
    const { bufferBytes, type, signal } = checkReceiveOptions(options);
    if (signal?.aborted) throw abortErrorFor(signal);
    const unclaimed = this.#unclaimed[0];
    if (unclaimed !== undefined) {
      // As the kernel answers a read too small for the message it has: the read fails, and the
      // message stays for one that fits.
      if (unclaimed.data.length > bufferBytes) throw new WinError({ syscall: 'FilterGetMessage', hresult: HRESULT_INSUFFICIENT_BUFFER });
      this.#unclaimed.shift();
      return this.#message<T>(unclaimed, type);
    }
    const handedOver = new AbortController();
    const native = await new Promise<NativeMessage>((resolve, reject) => {
      const adopt = (message: NativeMessage) => {
        this.#readers.delete(adopt);
        resolve(message);
        handedOver.abort(); // our own read is not needed any more; if it got a message, that is adopted too
      };
      this.#readers.add(adopt);
      const readSignal = signal === undefined ? handedOver.signal : AbortSignal.any([signal, handedOver.signal]);
      this.#read(bufferBytes, readSignal).then(
        (message) => {
          // Another reader's message may have been handed to us first (its completion came in the
          // same batch as ours): then our own goes to the next reader.
          if (this.#readers.delete(adopt)) resolve(message);
          else this.#adopt(message);
        },
        (error: unknown) => {
          this.#readers.delete(adopt);
          reject(error);
        },
      );
    });
    return this.#message<T>(native, type);
  }

  /**
   * Messages as they come, with `pending` reads kept outstanding in the kernel (re-armed off the
   * JS thread as each completes). Back-pressure: while 2 x `pending` messages wait for the loop
   * (those on their way to it included, and each delivery until the loop has taken all of it), no
   * read is re-armed. Ends when the port closes; throws an AbortError when the signal aborts and
   * the WinError when the kernel disconnects. A message read but not yet taken when the loop is
   * left stays for the next reader. A message larger than bufferBytes grows its read up to
   * maxBufferBytes; one larger still goes to onError and the loop goes on.
   */
  async *messages<T = unknown>(options?: MessagesOptions<T>): AsyncGenerator<FilterMessage<T>, void, undefined> {
    const { bufferBytes, type, signal, pending, maxBufferBytes } = checkMessagesOptions(options);
    const onError = checkOptionalFunction<NonNullable<MessagesOptions<T>['onError']>>(checkOptionsObject(options).onError, 'options.onError');
    const inbox = this.#openInbox(bufferBytes, pending, signal, maxBufferBytes, (error) => reportError(onError, 'FltportMessagesWarning', error, undefined), false);
    try {
      for (;;) {
        const next = inbox.take();
        if (next === null) return;
        if (next === undefined) await new Promise<void>((resolve) => inbox.onArrival(resolve));
        else yield this.#message<T>(next, type);
      }
    } finally {
      inbox.leave();
    }
  }

  /**
   * The scanner loop: `pending` reads outstanding, up to `concurrency` handlers at once, each
   * message answered with its handler's result (status 0) or, when the handler fails (throws,
   * returns what cannot be a reply, or returns undefined for a message that expects a reply
   * without replying itself), with HANDLER_FAILED_STATUS and the fail-safe verdict. Resolves when
   * the port closes or the signal aborts, after every handler and reply has settled; rejects with
   * the WinError when the kernel disconnects.
   */
  async serve<T = unknown>(handler: MessageHandler<T>, options?: ServeOptions<T>): Promise<ServeStats> {
    if (typeof handler !== 'function') throw invalidArgType('handler', 'a function', handler);
    const raw = checkOptionsObject(options);
    const { bufferBytes, type, signal, pending, maxBufferBytes } = checkMessagesOptions(options);
    const concurrency = checkOptionalInteger(raw.concurrency, 'options.concurrency', 1, 1 << 20) ?? pending;
    const onError = checkOptionalFunction<NonNullable<ServeOptions<T>['onError']>>(raw.onError, 'options.onError');
    const replyType = checkOptionalType(raw.replyType, 'options.replyType');
    const failureReply = checkFailureReply<T>(raw.failureReply, replyType);

    const stats: ServeStats = { received: 0, replied: 0, lateReplies: 0, unsentReplies: 0, failed: 0 };
    const report = (error: unknown, message: FilterMessage<T> | undefined) => reportError(onError, 'FltportServeWarning', error, message);
    // Driven by callbacks, not a loop of awaits: per message only what it needs, and no promise
    // for a handler that returns a value. A handler's slot is free once it has settled; its reply
    // goes on by itself (bounded by the kernel's messages), as a native scanner's completion
    // thread moves on.
    // A read whose message expects a reply is re-armed after that reply, as a native scanner does,
    // only while that cannot keep a handler slot from a message: with more handlers than reads, the
    // handlers holding messages would hold every read.
    const holdReads = concurrency <= pending;
    /** Messages that hold their stream read until their reply (Inbox.holdsRead). */
    const holdingReads = new WeakSet<FilterMessage<T>>();
    let inbox: Inbox;
    try {
      inbox = this.#openInbox(bufferBytes, pending, signal, maxBufferBytes, (error) => report(error, undefined), holdReads);
    } catch (error) {
      if (error instanceof AbortError) return stats;
      throw error;
    }
    let handlers = 0;
    let replies = 0;
    let waitingForSlot = false;
    let stopped = false;
    let ending: unknown;
    let drained!: () => void;
    const everythingSettled = new Promise<void>((resolve) => {
      drained = resolve;
    });
    const stop = (error: unknown) => {
      if (stopped) return;
      stopped = true;
      ending = error;
      inbox.leave();
    };
    const take = () => {
      if (stopped) return;
      try {
        for (;;) {
          if (handlers >= concurrency) {
            // inbox.take() checks the signal too, but is not reached while every slot is busy.
            if (signal?.aborted) throw abortErrorFor(signal);
            waitingForSlot = true;
            return;
          }
          const next = inbox.take();
          if (next === null) break;
          if (next === undefined) {
            inbox.onArrival(takeSoon);
            return;
          }
          dispatch(next);
        }
        stop(undefined);
      } catch (error) {
        stop(error);
      }
      if (handlers + replies === 0) drained();
    };
    // Arrivals are signalled from native callbacks: handlers run after those have returned, in a
    // bare promise reaction (queueMicrotask costs an async resource each time).
    const takeSoon = () => void settledPromise.then(take);
    const changed = () => {
      if (waitingForSlot && (handlers < concurrency || signal?.aborted)) {
        waitingForSlot = false;
        take();
      } else if (stopped && handlers + replies === 0) {
        drained();
      }
    };
    const replied = () => {
      replies -= 1;
      stats.replied += 1;
      changed();
    };
    const replyFailed = (nativeError: unknown, message: FilterMessage<T>) => {
      replies -= 1;
      const error = failureOf(this.#failure(nativeError), 'FilterReplyMessage');
      if (error instanceof WinError && error.code === 'ERROR_FLT_NO_WAITER_FOR_REPLY') {
        stats.lateReplies += 1;
      } else {
        stats.unsentReplies += 1;
        report(error, message);
      }
      changed();
    };
    const sendReply = (message: FilterMessage<T>, status: number, payload: Uint8Array | null) => {
      replies += 1;
      let sent: Promise<void>;
      try {
        const stream = holdingReads.delete(message) ? inbox.stream : null;
        try {
          sent = this.#endError === undefined ? this.#native.reply(message.id, status, payload, true, stream) : Promise.reject(this.#endError);
        } catch (error) {
          if (stream !== null) inbox.release();
          throw error;
        }
      } catch (error) {
        sent = Promise.reject(error);
      }
      sent.then(replied, (error: unknown) => replyFailed(error, message));
    };
    /** The payload of a failed handler's reply: the fail-safe verdict, zero-padded to replyBytes; zeros when there is none. */
    const failurePayload = (message: FilterMessage<T>, handlerError: unknown): Uint8Array => {
      const payload = Buffer.alloc(message.replyBytes);
      if (failureReply === undefined) return payload;
      try {
        let verdict: Uint8Array;
        if (typeof failureReply === 'function') {
          const result = failureReply(message, handlerError);
          // The verdict is needed now; a promise would be encoded as an empty struct: failing open.
          if (isThenable(result)) throw invalidReturnValue('options.failureReply must return the verdict itself, not a promise');
          verdict = toPayload(result, replyType, 'the failureReply result');
        } else {
          verdict = failureReply;
        }
        if (verdict.byteLength > payload.byteLength) {
          throw outOfRange('the failure reply', `at most ${payload.byteLength} bytes (the kernel's reply buffer)`, verdict.byteLength);
        }
        payload.set(verdict);
      } catch (cause) {
        const error = new FltportError('ERR_FLTPORT_FAILURE_REPLY', `options.failureReply gave no verdict for message ${message.id}: the kernel gets ${payload.byteLength} zero bytes`, { cause });
        report(error, message);
      }
      return payload;
    };
    /** A message answered elsewhere (its handler, onError, failureReply): the read it holds comes back now. */
    const repliedElsewhere = (message: FilterMessage<T>) => {
      if (holdingReads.delete(message)) inbox.release();
    };
    /** A failed handler: reported, and its message answered with HANDLER_FAILED_STATUS and the fail-safe verdict. */
    const failed = (message: FilterMessage<T>, error: unknown) => {
      stats.failed += 1;
      report(error, message);
      if (!message.expectsReply) return;
      if (message.replied) return repliedElsewhere(message); // onError may have answered it
      const payload = failurePayload(message, error);
      if (message.replied) return repliedElsewhere(message); // so may failureReply
      claimReply(message, payload, undefined);
      sendReply(message, HANDLER_FAILED_STATUS, payload);
    };
    const answer = (message: FilterMessage<T>, result: unknown) => {
      handlers -= 1;
      try {
        if (!message.expectsReply) return;
        if (message.replied) return repliedElsewhere(message);
        let payload: Uint8Array | null;
        try {
          if (result === undefined) throw noReplyError(message);
          payload = claimReply(message, result, replyType);
        } catch (error) {
          failed(message, error);
          return;
        }
        sendReply(message, 0, payload);
      } finally {
        changed();
      }
    };
    const fail = (message: FilterMessage<T>, error: unknown) => {
      handlers -= 1;
      try {
        failed(message, error);
      } finally {
        changed();
      }
    };
    const dispatch = (native: NativeMessage) => {
      stats.received += 1;
      handlers += 1;
      const message = this.#message<T>(native, type);
      if (inbox.holdsRead(native)) holdingReads.add(message);
      let result: unknown;
      try {
        result = handler(message);
        if (isThenable(result)) {
          // Adopted as await would: a `then` that throws or calls back twice is the promise's problem.
          new Promise((resolve) => resolve(result)).then(
            (value) => answer(message, value),
            (error: unknown) => fail(message, error),
          );
          return;
        }
      } catch (error) {
        fail(message, error);
        return;
      }
      answer(message, result);
    };

    // An abort while every slot is busy ends the loop at once; the handlers still settle first.
    signal?.addEventListener('abort', changed);
    take();
    await everythingSettled;
    signal?.removeEventListener('abort', changed);
    if (ending === undefined || ending instanceof AbortError) return stats;
    throw ending;
  }

  /** Pending reads keep the event loop alive (the default). */
  ref(): this {
    this.#native.ref();
    return this;
  }

  /** Pending reads no longer keep the event loop alive. */
  unref(): this {
    this.#native.unref();
    return this;
  }

  /**
   * Cancels every pending read, waits for their completions off the JS thread and closes the
   * handle. Every pending promise rejects once with ERR_FLTPORT_CLOSED, as does every later call.
   */
  close(): Promise<void> {
    this.#end(new FltportError('ERR_FLTPORT_CLOSED', `the port ${this.name} is closed`));
    return this.#closing as Promise<void>;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  #end(error: Error): void {
    if (this.#endError !== undefined) return;
    this.#endError = error;
    this.#unclaimed.length = 0;
    for (const pending of [...this.#pending]) pending.fail(error);
    this.#closing = this.#native.close();
  }

  /** A message whose reader gave up: to a reader waiting now, else kept for the next one. */
  #adopt(message: NativeMessage): void {
    if (this.#endError !== undefined) return;
    const reader = this.#readers.values().next();
    if (reader.done) this.#unclaimed.push(message);
    else reader.value(message);
  }

  #message<T>(native: NativeMessage, type: StructType | undefined): FilterMessage<T> {
    return new FilterMessage<T>(native.id, native.replyLength, native.data, type, this.#sendReply);
  }

  /**
   * A stream of messages for one loop (messages(), serve()), with the messages other readers
   * left first. Throws at once when the signal has aborted or the port has ended.
   */
  #openInbox(
    bufferBytes: number,
    pending: number,
    signal: AbortSignal | undefined,
    maxBufferBytes: number,
    onUnreadable: (error: unknown) => void,
    holdForReply: boolean,
  ): Inbox {
    if (signal?.aborted) throw abortErrorFor(signal);
    if (this.#endError !== undefined) throw failureOf(this.#endError, 'FilterGetMessage');

    // Messages others left (#unclaimed, #adopt) come first; only the stream's own count as consumed.
    // They are taken once the stream is open: a stream that cannot open must leave them where they are.
    const handedOver: NativeMessage[] = [];
    // The stream's own messages, in the batches they came in: no copy into a queue of our own.
    const batches: NativeMessage[][] = [];
    let position = 0; // in batches[0]
    let taken = 0; // of batches[0], done with once taken
    const holdingReads = new WeakSet<NativeMessage>();
    let leaving = false;
    let failure: unknown;
    let wake: (() => void) | undefined;
    const notify = () => {
      const resume = wake;
      wake = undefined;
      resume?.();
    };
    const adopt = (message: NativeMessage) => {
      handedOver.push(message);
      notify();
    };
    const ending: Pending = {
      fail: (error) => {
        failure ??= failureOf(error, 'FilterGetMessage');
        notify();
      },
    };
    const stream = this.#openStream(
      MESSAGE_HEADER_BYTES + bufferBytes,
      pending,
      (messages, unreadable) => {
        for (const nativeError of unreadable) onUnreadable(unreadableError(nativeError));
        if (leaving) {
          for (const message of messages) this.#adopt(message);
          return;
        }
        // A batch may carry only messages that could not be read.
        if (messages.length > 0) batches.push(messages);
        notify();
      },
      (nativeError) => {
        if (nativeError !== null) ending.fail(this.#failure(nativeError));
      },
      MESSAGE_HEADER_BYTES + maxBufferBytes,
      holdForReply,
    );
    handedOver.push(...this.#unclaimed.splice(0));
    this.#readers.add(adopt);
    this.#pending.add(ending);
    signal?.addEventListener('abort', notify);
    return {
      take: () => {
        // First: with messages arriving as fast as they are taken, the queues may never be empty.
        if (signal?.aborted) throw abortErrorFor(signal);
        // After close() nothing more is handed out: the messages read before it could not be answered.
        if (isClosedError(this.#endError)) return null;
        const next = handedOver.shift();
        if (next !== undefined) return next;
        const batch = batches[0];
        if (batch !== undefined) {
          const own = batch[position];
          position += 1;
          if (holdForReply && own.replyLength !== 0) holdingReads.add(own);
          else taken += 1;
          if (position >= batch.length) {
            // Reported a batch at a time: one call into the addon per delivery, not per message.
            // The reads' bound (2 x pending) leaves room for the batch taken meanwhile.
            batches.shift();
            position = 0;
            if (taken > 0) stream.consumed(taken);
            taken = 0;
          }
          return own;
        }
        if (failure === undefined) return undefined;
        if (isClosedError(failure)) return null;
        throw failure;
      },
      onArrival: (callback) => {
        wake = callback;
      },
      holdsRead: (message) => holdingReads.has(message),
      stream,
      release: () => stream.consumed(1),
      leave: () => {
        leaving = true;
        this.#readers.delete(adopt);
        this.#pending.delete(ending);
        signal?.removeEventListener('abort', notify);
        stream.stop();
        const unread = [...handedOver, ...batches.flat().slice(position)];
        handedOver.length = 0;
        batches.length = 0;
        for (const message of unread) this.#adopt(message);
      },
    };
  }

  /** A native call's error as callers get it; a disconnect ends the port. */
  #failure(nativeError: unknown): unknown {
    const error = fromNative(nativeError);
    if (isDisconnect(error)) this.#end(error);
    return error;
  }

  #openStream(...args: Parameters<NativeFilterPort['stream']>): NativeMessageStream {
    try {
      return this.#native.stream(...args);
    } catch (error) {
      throw fromNative(error);
    }
  }

  #read(bufferBytes: number, signal: AbortSignal | undefined): Promise<NativeMessage> {
    const readId = this.#nextReadId;
    this.#nextReadId = (this.#nextReadId + 1) >>> 0;
    return this.#track(
      'FilterGetMessage',
      () => this.#native.read(MESSAGE_HEADER_BYTES + bufferBytes, readId),
      signal,
      () => this.#native.cancelRead(readId),
      (late) => this.#adopt(late),
    );
  }

  /**
   * Runs one native call (of the Windows function `syscall`) so that its promise settles exactly
   * once: with the call's outcome, or earlier with an AbortError (then `cancel` runs) or with the
   * port's end. A result that arrives after that goes to `orphan`.
   */
  #track<T>(
    syscall: string,
    start: () => Promise<T>,
    signal: AbortSignal | undefined,
    cancel?: () => void,
    orphan?: (late: T) => void,
  ): Promise<T> {
    if (this.#endError !== undefined) return Promise.reject(failureOf(this.#endError, syscall));
    if (signal?.aborted) return Promise.reject(abortErrorFor(signal));
    const work = start();
    return new Promise<T>((resolve, reject) => {
      const call = new TrackedCall(this.#pending, syscall, resolve, reject, signal, cancel);
      work.then(
        (value) => {
          if (!call.succeed(value)) orphan?.(value);
        },
        (nativeError: unknown) => call.fail(this.#failure(nativeError)),
      );
    });
  }
}

/** A native call in flight (FilterPort#track): its promise settles exactly once. */
class TrackedCall<T> implements Pending {
  readonly #calls: Set<Pending>;
  readonly #syscall: string;
  readonly #resolve: (value: T) => void;
  readonly #reject: (error: unknown) => void;
  readonly #signal: AbortSignal | undefined;
  readonly #onAbort: (() => void) | undefined;
  #settled = false;

  constructor(
    calls: Set<Pending>,
    syscall: string,
    resolve: (value: T) => void,
    reject: (error: unknown) => void,
    signal: AbortSignal | undefined,
    cancel: (() => void) | undefined,
  ) {
    this.#calls = calls;
    this.#syscall = syscall;
    this.#resolve = resolve;
    this.#reject = reject;
    this.#signal = signal;
    calls.add(this);
    if (signal !== undefined) {
      this.#onAbort = () => {
        this.fail(abortErrorFor(signal));
        cancel?.();
      };
      signal.addEventListener('abort', this.#onAbort, { once: true });
    }
  }

  /** False when the call has already settled otherwise: the value is then the caller's to place. */
  succeed(value: T): boolean {
    if (this.#settled) return false;
    this.#finish();
    this.#resolve(value);
    return true;
  }

  /** A port's end that another call saw is reported as a failure of this call's own syscall. */
  fail(error: unknown): void {
    if (this.#settled) return;
    this.#finish();
    this.#reject(failureOf(error, this.#syscall));
  }

  #finish(): void {
    this.#settled = true;
    this.#calls.delete(this);
    if (this.#onAbort !== undefined) this.#signal?.removeEventListener('abort', this.#onAbort);
  }
}

const settledPromise = Promise.resolve();

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (typeof value === 'object' || typeof value === 'function') && value !== null && typeof (value as PromiseLike<unknown>).then === 'function';
}

/** Any call answered ERROR_INVALID_HANDLE on a handle we still own: the kernel side is gone. */
function isDisconnect(error: unknown): error is WinError {
  return error instanceof WinError && error.hresult === HRESULT_INVALID_HANDLE;
}

function isClosedError(error: unknown): boolean {
  return error instanceof FltportError && error.code === 'ERR_FLTPORT_CLOSED';
}

function noReplyError(message: FilterMessage): TypeError {
  return invalidReturnValue(
    `the handler returned undefined for message ${message.id}, which expects a reply: return the reply, or reply with message.reply()`,
  );
}

/** options.failureReply: bytes or an object (encoded now, once), or a function called per failed message. */
function checkFailureReply<T>(value: unknown, replyType: StructType | undefined): Uint8Array | ((message: FilterMessage<T>, error: unknown) => unknown) | undefined {
  if (value === undefined) return undefined;
  if (typeof value === 'function') return value as (message: FilterMessage<T>, error: unknown) => unknown;
  if (value instanceof Uint8Array) return Buffer.from(checkBytes(value, 'options.failureReply', MAX_PAYLOAD_BYTES));
  if (typeof value !== 'object' || value === null || replyType === undefined) {
    throw invalidArgType('options.failureReply', 'a Uint8Array, a function, or an object with options.replyType', value);
  }
  return toPayload(value, replyType, 'options.failureReply');
}

function checkReceiveOptions(options: unknown) {
  const raw = checkOptionsObject(options);
  const bufferBytes = checkOptionalInteger(raw.bufferBytes, 'options.bufferBytes', 0, MAX_PAYLOAD_BYTES) ?? DEFAULT_BUFFER_BYTES;
  const type = checkOptionalType(raw.type, 'options.type');
  return { bufferBytes, type, signal: checkOptionalSignal(raw.signal) };
}

function checkMessagesOptions(options: unknown) {
  const raw = checkOptionsObject(options);
  const receive = checkReceiveOptions(options);
  const maxBufferBytes =
    checkOptionalInteger(raw.maxBufferBytes, 'options.maxBufferBytes', receive.bufferBytes, MAX_PAYLOAD_BYTES) ??
    Math.max(DEFAULT_MAX_BUFFER_BYTES, receive.bufferBytes);
  return {
    ...receive,
    pending: checkOptionalInteger(raw.pending, 'options.pending', 1, MAX_PENDING) ?? DEFAULT_PENDING,
    maxBufferBytes,
  };
}

/** A message the native stream could not read, as onError gets it: `bufferBytes` is the largest payload tried. */
function unreadableError(nativeError: Error): unknown {
  const tried = (nativeError as { bufferBytes?: unknown }).bufferBytes;
  const error = fromNative(nativeError);
  if (typeof tried === 'number' && typeof error === 'object' && error !== null) {
    Object.assign(error, { bufferBytes: tried - MESSAGE_HEADER_BYTES });
  }
  return error;
}

/** To `onError`, or a process warning without one; onError's own failure must not end a loop. */
function reportError<T>(
  onError: ((error: unknown, message: FilterMessage<T> | undefined) => void) | undefined,
  warningType: string,
  error: unknown,
  message: FilterMessage<T> | undefined,
): void {
  if (onError === undefined) {
    process.emitWarning(error instanceof Error ? error : new Error(String(error)), warningType);
    return;
  }
  try {
    onError(error, message);
  } catch {
    // ignored, see above
  }
}
