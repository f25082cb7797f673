// FilterMessage: one message from the minifilter (FilterGetMessage), and its reply.
import { FltportError, invalidArgType, outOfRange } from './errors';
import { type StructType, checkOptionalType, decodeStruct, toPayload } from './structs';
import { checkOptionsObject } from './validate';

/** sizeof(FILTER_REPLY_HEADER): the kernel's reply length as user mode sees it includes it. */
export const REPLY_HEADER_BYTES = 16;

export interface ReplyOptions {
  /** The NTSTATUS in FILTER_REPLY_HEADER.Status (default 0, STATUS_SUCCESS). */
  status?: number;
  /** Encode `payload` with this koffi type when it is an object (a Uint8Array is always sent as it is). */
  type?: StructType;
}

export type SendReply = (id: bigint, status: number, payload: Uint8Array | null) => Promise<void>;

let claim: (message: FilterMessage, payload: unknown, type: StructType | undefined) => Uint8Array | null;

/**
 * @internal For serve(), which sends its replies itself: reply()'s checks (the status's
 * excepted); marks the message replied and returns the payload to send. Not exported by the package.
 */
export function claimReply(message: FilterMessage, payload: unknown, type: StructType | undefined): Uint8Array | null {
  return claim(message, payload, type);
}

export class FilterMessage<T = unknown> {
  /** FILTER_MESSAGE_HEADER.MessageId. */
  readonly id: bigint;
  /** The payload after the 16-byte header: exactly the bytes received. */
  readonly data: Buffer;
  /** Payload bytes the kernel waits for, header excluded; 0 when no reply is expected. */
  readonly replyBytes: number;
  /** Whether the kernel passed a reply buffer (FILTER_MESSAGE_HEADER.ReplyLength != 0). */
  readonly expectsReply: boolean;
  readonly #type: StructType | undefined;
  readonly #sendReply: SendReply;
  #replied = false;
  #value: T | undefined;

  /** @internal */
  constructor(id: bigint, replyLength: number, data: Buffer, type: StructType | undefined, sendReply: SendReply) {
    this.id = id;
    this.data = data;
    this.expectsReply = replyLength !== 0;
    this.replyBytes = Math.max(0, replyLength - REPLY_HEADER_BYTES);
    this.#type = type;
    this.#sendReply = sendReply;
  }

  /** `data` decoded with the koffi type given to receive(), messages() or serve(). */
  get value(): T {
    if (this.#type === undefined) {
      throw new FltportError('ERR_FLTPORT_NO_TYPE', 'this message was received without a type to decode it with');
    }
    this.#value ??= decodeStruct<T>(this.#type, this.data, 'message type');
    return this.#value;
  }

  get replied(): boolean {
    return this.#replied;
  }

  /**
   * FilterReplyMessage with FILTER_REPLY_HEADER + payload, exactly that many bytes. A reply
   * after the kernel stopped waiting rejects with WinError ERROR_FLT_NO_WAITER_FOR_REPLY.
   */
  async reply(payload?: Uint8Array | object, options?: ReplyOptions): Promise<void> {
    const raw = checkOptionsObject(options);
    const status = raw.status ?? 0;
    if (typeof status !== 'number') throw invalidArgType('options.status', 'a number', status);
    if (!Number.isInteger(status) || status < -0x80000000 || status > 0xffffffff) {
      throw outOfRange('options.status', 'a 32-bit NTSTATUS', status);
    }
    const bytes = this.#claimReply(payload, checkOptionalType(raw.type, 'options.type'));
    await this.#sendReply(this.id, status, bytes);
  }

  /** reply()'s checks after the status's: marks the message replied and returns the payload to send. */
  #claimReply(payload: unknown, type: StructType | undefined): Uint8Array | null {
    const bytes = payload === undefined ? null : toPayload(payload, type, 'payload');
    if (!this.expectsReply) {
      throw new FltportError('ERR_FLTPORT_REPLY_NOT_EXPECTED', `message ${this.id} expects no reply`);
    }
    if (bytes !== null && bytes.byteLength > this.replyBytes) {
      throw outOfRange('the reply payload', `at most ${this.replyBytes} bytes (the kernel's reply buffer)`, bytes.byteLength);
    }
    if (this.#replied) throw new FltportError('ERR_FLTPORT_ALREADY_REPLIED', `message ${this.id} was already replied to`);
    this.#replied = true;
    return bytes;
  }

  static {
    claim = (message, payload, type) => message.#claimReply(payload, type);
  }
}
