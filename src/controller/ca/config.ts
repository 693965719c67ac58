// The CA's settings, read once into a frozen, validated object; each default with its reason.
import { CA_TOKEN_AUDIENCE, validateTrustDomain } from '../../identity/index.ts';
import { CA_DEFAULTS } from './server.ts';
import { CaError } from './errors.ts';

export interface CaConfig {
  readonly trustDomain: string;
  /** Where the CA's Secrets live. */
  readonly namespace: string;
  /** Istio's plug-in CA Secret name, so existing cacerts tooling works unchanged. */
  readonly pluggedSecret: string;
  readonly selfSignedSecret: string;
  readonly selfSignedTtlMs: number;
  /** Extra roots to trust and publish (PEM), e.g. the previous root while rotating. */
  readonly extraRoots: string | undefined;
  /** TokenReview usernames allowed to request workload certificates for pods on their node. */
  readonly trustedNodeAccounts: readonly string[];
  /** Audiences the node token must carry (empty: the API server's default audience). */
  readonly audiences: readonly string[];
  readonly defaultTtlMs: number;
  readonly maxTtlMs: number;
  readonly servingNames: { readonly dnsNames: readonly string[]; readonly ipAddresses: readonly string[] };
  readonly host: string;
  readonly port: number;
}

const DAY = 86_400_000;

export const CA_CONFIG_DEFAULTS: Omit<CaConfig, 'trustDomain'> = Object.freeze({
  namespace: 'mesh-system',
  pluggedSecret: 'cacerts',
  selfSignedSecret: 'mesh-ca',
  // Istio's self-signed root lives 10 years: rotating a root is a fleet-wide event.
  selfSignedTtlMs: 3650 * DAY,
  extraRoots: undefined,
  // The DaemonSet's service account (daemonset/ chart); Istio's equivalent is ztunnel's.
  trustedNodeAccounts: Object.freeze(['system:serviceaccount:mesh-system:mesh-node']),
  // As Istio's CA requires "istio-ca": a token minted for the API server (or for anything else)
  // is not a credential for the CA. The chart projects the node token with this audience.
  audiences: Object.freeze([CA_TOKEN_AUDIENCE]),
  defaultTtlMs: CA_DEFAULTS.defaultTtlMs,
  maxTtlMs: CA_DEFAULTS.maxTtlMs,
  servingNames: CA_DEFAULTS.servingNames,
  host: '0.0.0.0',
  port: CA_DEFAULTS.port,
});

/** Fills defaults and validates; unknown keys are refused so a typo does not silently do nothing. */
export function caConfig(input: Partial<CaConfig> & { trustDomain: string }): CaConfig {
  const known = new Set(['trustDomain', ...Object.keys(CA_CONFIG_DEFAULTS)]);
  const unknown = Object.keys(input).filter((k) => !known.has(k));
  if (unknown.length) throw new CaError('MESH_ERR_CA_ROOT', `unknown CA setting${unknown.length > 1 ? 's' : ''} ${unknown.join(', ')}; known: ${[...known].join(', ')}`);
  const c = { ...CA_CONFIG_DEFAULTS, ...Object.fromEntries(Object.entries(input).filter(([, v]) => v !== undefined)) } as CaConfig;
  validateTrustDomain(c.trustDomain);
  for (const k of ['selfSignedTtlMs', 'defaultTtlMs', 'maxTtlMs'] as const) {
    if (!Number.isFinite(c[k]) || c[k] <= 0) throw new CaError('MESH_ERR_CA_ROOT', `CA setting ${k} must be a positive number of milliseconds, got ${c[k]}`);
  }
  if (c.maxTtlMs < c.defaultTtlMs) throw new CaError('MESH_ERR_CA_ROOT', `CA setting maxTtlMs (${c.maxTtlMs}) is below defaultTtlMs (${c.defaultTtlMs})`);
  if (!c.trustedNodeAccounts.length) throw new CaError('MESH_ERR_CA_ROOT', 'CA setting trustedNodeAccounts is empty: no node could get certificates');
  return Object.freeze({ ...c, trustedNodeAccounts: Object.freeze([...c.trustedNodeAccounts]), audiences: Object.freeze([...c.audiences]) });
}
