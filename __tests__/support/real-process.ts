// Jest gives each test file a copy of `process` whose listeners never hear the real events; the
// main context's `process` is the one Node emits 'uncaughtException' and 'unhandledRejection' on.
import vm from 'node:vm';

/** The process object Node really emits crash events on, inside a jest test file. */
export const realProcess = vm.runInThisContext('process') as NodeJS.Process;
