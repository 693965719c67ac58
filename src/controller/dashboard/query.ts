// The dashboard's flow queries: URL parameters named after `meshctl flows` flags
// (`?from-pod=shop/frontend&verdict=DROPPED&not-namespace=kube-system&last=50`) become the
// Observer GetFlowsRequest meshctl would send (src/flows/request.ts builds both), with Hubble's
// filter semantics (src/flows/filter.ts applies them at each node).
import { FILTER_FLAGS, FlowFilterError, requestFromParams } from '../../flows/request.ts';
import type { GetFlowsRequest } from '../../flows/types.ts';

export class DashboardQueryError extends Error {
  readonly code = 'MESH_ERR_DASHBOARD_QUERY';
}

/** Flows a query returns when it says nothing: more than hubble's 20, a panel's worth. */
export const DEFAULT_LAST = 100;
const MAX_LAST = 4095;

/** The `meshctl flows` flags the dashboard accepts, as URL parameter names ("not-" before one negates it). */
export const QUERY_FLAGS: readonly string[] = [...FILTER_FLAGS.map((f) => f.name), 'last', 'first', 'since', 'until'];

/** The GetFlowsRequest (history, not follow) for `params`; unknown or bad parameters are errors. */
export function flowsRequest(params: URLSearchParams, now = Date.now()): GetFlowsRequest {
  try {
    return requestFromParams(params, { defaultLast: DEFAULT_LAST, maxLast: MAX_LAST, now });
  } catch (e) {
    if (e instanceof FlowFilterError) throw new DashboardQueryError(e.message);
    throw e;
  }
}
