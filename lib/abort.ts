// Abort handling shared by the port classes.
import { abortErrorFor } from './errors';

/**
 * Settles with `work` unless `signal` aborts first; then rejects with an AbortError and hands
 * whatever `work` produces later to `discard`, so nothing it opened is leaked.
 */
export function settleOnce<T>(work: Promise<T>, signal: AbortSignal, discard: (value: T) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => {
      reject(abortErrorFor(signal));
      work.then(discard, () => undefined);
    };
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        if (!signal.aborted) resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error);
      },
    );
  });
}
