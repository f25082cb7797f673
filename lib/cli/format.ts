// Output of the fltport command: fltmc-style tables and previews of message bytes.

export interface Column<T> {
  header: string;
  value: (row: T) => string;
  /** Numbers are right-aligned. */
  right?: boolean;
}

/** A table with a dashed rule under the headers, each column as wide as its widest cell. */
export function table<T>(rows: readonly T[], columns: readonly Column<T>[]): string {
  const cells = rows.map((row) => columns.map((column) => column.value(row)));
  const widths = columns.map((column, i) => Math.max(column.header.length, ...cells.map((row) => (row[i] as string).length)));
  const line = (values: string[]) =>
    values
      .map((value, i) => (columns[i]?.right ? value.padStart(widths[i] as number) : value.padEnd(widths[i] as number)))
      .join('  ')
      .trimEnd();
  return [line(columns.map((column) => column.header)), line(widths.map((width) => '-'.repeat(width))), ...cells.map(line)].join('\n') + '\n';
}

const PREVIEW_BYTES = 32;
// Text reads further than hex: a path a driver sends is often past its first 32 characters.
const PREVIEW_UNITS = 64;

/** The first bytes as hex, "…" when there are more. */
export function hexPreview(data: Uint8Array): string {
  const shown = Buffer.from(data.buffer, data.byteOffset, Math.min(data.byteLength, PREVIEW_BYTES)).toString('hex').replace(/(..)(?!$)/g, '$1 ');
  return data.byteLength > PREVIEW_BYTES ? `${shown} …` : shown;
}

/** The first 64 UTF-16LE units, printable characters only (others as "."), "…" when bytes are left over. */
export function utf16Preview(data: Uint8Array): string {
  const units = Math.min(Math.floor(data.byteLength / 2), PREVIEW_UNITS);
  const text = Buffer.from(data.buffer, data.byteOffset, units * 2).toString('utf16le');
  const printable = text.replace(/[^\x20-\x7e\u00a0-\ud7ff\ue000-\ufffd]/g, '.');
  return data.byteLength > units * 2 ? `${printable}…` : printable;
}
