// `meshctl analyze`: the cluster checked as istioctl analyze checks Istio's — rules (rules.ts) over
// what gather.ts reads, findings with codes and fixes (findings.ts, docs/analyze.md).
export { atLeast, CODES, type Code, type Finding, findingLine, SEVERITIES, type Severity, sortFindings } from './findings.ts';
export { gather, type GatherOptions, readSnapshot } from './gather.ts';
export { analyze, type AnalyzeInput, certificateFindings, labelFindings, policyFindings, routeFindings, serviceFindings, strictFindings, waypointFindings } from './rules.ts';
