// Reads the counts out of mocha's spec reporter summary ("N passing", "N failing", "N pending").
export function mochaCounts(output) {
  const plain = output.replace(/\x1b\[[0-9;]*m/g, '');
  const count = (word) => {
    const match = plain.match(new RegExp(`^\\s*(\\d+) ${word}\\b`, 'm'));
    return match ? Number(match[1]) : 0;
  };
  // mocha always prints "N passing", 0 included: without it the run ended before its summary.
  const summarized = /^\s*\d+ passing\b/m.test(plain);
  return { passed: count('passing'), failed: count('failing'), skipped: count('pending'), summarized };
}
