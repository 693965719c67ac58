// meshctl: the public face of src/cli for tests and for other entry points.
export {
  type AttachedProgram,
  BPF_FS_MAGIC,
  type BpffsProbe,
  type CheckResult,
  type CheckStatus,
  checkBpffs,
  checkBtf,
  checkCapabilities,
  checkCgroup2,
  checkKernel,
  checkProgramTypes,
  checkRingBuffer,
  checkSocketLb,
  compareKernel,
  type HostFacts,
  type KernelVersion,
  kernelAtLeast,
  type ProgTypeProbe,
  parseBpftoolCgroupShow,
  parseCapEff,
  parseKernelRelease,
  type RootCgroupProbe,
  runChecks,
} from './checks.ts';
export { exitCodeOf, gatherHostFacts } from './commands/check.ts';
export { createProgram, EXIT_FAILURE, EXIT_USAGE, main } from './main.ts';
export { renderChecks } from './output.ts';
