// The node agent's public face.
export { Agent, type AgentStatus } from './agent.ts';
export { type AgentConfig, ConfigError, loadAgentConfig } from './config.ts';
export { controlRequest, serveControl } from './control.ts';
export { type EnrolledPod, Enrolment, EnrolmentError, type PodSpec } from './enrolment.ts';
