// When a test may skip. A privileged test skips as a normal user running
// the unit tests, but in the suite's own runs (scripts/test.sh sets
// MEMBRANE_TEST_STRICT=1, so CI does too) a test that cannot run fails
// the file instead: a green run must mean every test ran.

export const isRoot = process.getuid?.() === 0;

/** Set by scripts/test.sh: a missing prerequisite is a failure, not a skip. */
export const strict = process.env.MEMBRANE_TEST_STRICT === '1';

/** The reason to skip when `ok` is false (false otherwise); under strict, throws instead, failing the test file with the reason. */
export function skipUnless(ok: boolean, reason: string): false | string {
  if (ok) return false;
  if (strict) throw new Error(`${reason}: this test cannot run here, and with MEMBRANE_TEST_STRICT=1 (scripts/test.sh, CI) a test that cannot run fails`);
  return reason;
}

/** For privileged tests: skip (or, under strict, fail) unless running as root. */
export function rootOnly(reason = 'needs root (netns, bpf)'): false | string {
  return skipUnless(isRoot, reason);
}
