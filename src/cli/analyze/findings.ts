// What `meshctl analyze` reports: findings shaped like istioctl analyze's messages — a stable
// code, a severity, the object, what is wrong and the fix. Every code is documented with its fix
// in docs/analyze.md (a unit test keeps the two in step).

export type Severity = 'Error' | 'Warning' | 'Info';
export const SEVERITIES: readonly Severity[] = ['Error', 'Warning', 'Info'];

export interface Finding {
  code: string;
  severity: Severity;
  /** The object: its kind, and namespace/name ("" namespace for cluster-scoped ones). */
  kind: string;
  namespace: string;
  name: string;
  message: string;
  fix: string;
}

/** Every code, with its severity and short name (istioctl's message type names). */
export const CODES = {
  MESH0101: { severity: 'Error', name: 'UnknownNamespaceDataplaneMode' },
  MESH0102: { severity: 'Error', name: 'UnknownPodDataplaneMode' },
  MESH0103: { severity: 'Info', name: 'PodOptedOut' },
  MESH0104: { severity: 'Info', name: 'HostNetworkPodNotCaptured' },
  MESH0201: { severity: 'Error', name: 'PolicyNotAccepted' },
  MESH0202: { severity: 'Error', name: 'PolicyNotEnforcedAsWritten' },
  MESH0301: { severity: 'Error', name: 'WaypointMissing' },
  MESH0302: { severity: 'Error', name: 'WaypointNotReady' },
  MESH0401: { severity: 'Warning', name: 'ServiceWithoutReadyEndpoints' },
  MESH0501: { severity: 'Error', name: 'StrictNamespaceCalledInPlaintext' },
  MESH0502: { severity: 'Info', name: 'FlowsNotRead' },
  MESH0601: { severity: 'Error', name: 'RouteNotResolved' },
  MESH0701: { severity: 'Error', name: 'CertificateRenewalFailing' },
  MESH0702: { severity: 'Warning', name: 'CertificateRenewalRetrying' },
  MESH0703: { severity: 'Info', name: 'CertificatesNotRead' },
} as const satisfies Record<string, { severity: Severity; name: string }>;

export type Code = keyof typeof CODES;

export function finding(code: Code, obj: { kind: string; namespace?: string; name: string }, message: string, fix: string): Finding {
  return { code, severity: CODES[code].severity, kind: obj.kind, namespace: obj.namespace ?? '', name: obj.name, message, fix };
}

const RANK: Record<Severity, number> = { Error: 0, Warning: 1, Info: 2 };

/** Errors first, then by code and object, so that equal clusters give equal output. */
export function sortFindings(fs: Finding[]): Finding[] {
  return [...fs].sort(
    (a, b) => RANK[a.severity] - RANK[b.severity] || a.code.localeCompare(b.code) || a.namespace.localeCompare(b.namespace) || a.kind.localeCompare(b.kind) || a.name.localeCompare(b.name),
  );
}

/** istioctl's line: `Error [IST0101] (Pod default/web) message. Fix: …`. */
export function findingLine(f: Finding): string {
  const obj = f.namespace ? `${f.namespace}/${f.name}` : f.name;
  return `${f.severity} [${f.code}] (${f.kind} ${obj}) ${f.message}. Fix: ${f.fix}`;
}

/** Whether `f` is at least as severe as `threshold`. */
export function atLeast(f: Finding, threshold: Severity): boolean {
  return RANK[f.severity] <= RANK[threshold];
}
