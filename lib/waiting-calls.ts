// A process-wide limit on the LPC calls that wait inside the kernel for another party:
// NtConnectPort (until the server accepts) and NtRequestWaitReplyPort (until it replies).
//
// Each holds a Windows thread-pool thread for as long as it waits, and the pool that runs every
// native call of the addon has about 500 threads (512 on Windows, 500 under Wine). With that many
// waiting, nothing else of the process gets a thread, including the accept() and reply() of a
// server in this process that would end those waits: a deadlock, hit by 520 concurrent requests
// to a server in the same process. Calls beyond the limit wait here, in order, instead.

/** Leaves most of the pool to everything else. */
export const MAX_WAITING_LPC_CALLS = 256;

let running = 0;
const queued: Array<() => void> = [];

function release(): void {
  running -= 1;
  queued.shift()?.();
}

/**
 * Runs `start` once fewer than MAX_WAITING_LPC_CALLS such calls are in flight. A call whose turn
 * comes after `cancelled()` became true is not started: it rejects with `cancelled`'s error.
 */
export function runWaitingCall<T>(start: () => Promise<T>, cancelled: () => Error | undefined): Promise<T> {
  const begin = (): Promise<T> => {
    const reason = cancelled();
    if (reason !== undefined) return Promise.reject(reason);
    running += 1;
    let work: Promise<T>;
    try {
      work = start();
    } catch (error) {
      release();
      return Promise.reject(error);
    }
    return work.finally(release);
  };
  if (running < MAX_WAITING_LPC_CALLS) return begin();
  return new Promise<T>((resolve, reject) => {
    queued.push(() => {
      begin().then(resolve, reject);
    });
  });
}
