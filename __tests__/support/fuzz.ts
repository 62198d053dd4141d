// Run counts for property tests: modest in `npm test`, larger with FUZZ_RUNS=N.
export const fuzzRuns = (base: number): number => {
  const fromEnv = Number(process.env.FUZZ_RUNS);
  return Number.isSafeInteger(fromEnv) && fromEnv > 0 ? fromEnv : base;
};
