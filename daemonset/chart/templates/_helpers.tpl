{{/*
The controller's namespace is fixed: its CA keeps its root in mesh-system, trusts the node
service account mesh-system/mesh-node, and every node dials mesh-controller.mesh-system.svc
(src/common/shared-settings.ts, src/controller/ca/config.ts). Installing elsewhere would start
processes that cannot find each other, so the chart refuses.
*/}}
{{- define "mesh.checkNamespace" -}}
{{- if ne .Release.Namespace "mesh-system" -}}
{{- fail (printf "the mesh installs into namespace mesh-system (its CA, its node identity and the controller's Service name are there), not %q: helm install mesh daemonset/chart -n mesh-system --create-namespace" .Release.Namespace) -}}
{{- end -}}
{{- end -}}

{{- define "mesh.labels" -}}
app.kubernetes.io/name: mesh
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "mesh.image" -}}
{{- printf "%s:%s" .repository .tag -}}
{{- end -}}

{{/* MESH_LOG_LEVEL and MESH_TRACE, which every process reads (LOG_SETTINGS in src/common/settings.ts). */}}
{{- define "mesh.logEnv" -}}
- name: MESH_LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
{{- with .Values.trace }}
- name: MESH_TRACE
  value: {{ join "," . | quote }}
{{- end }}
{{- end -}}

{{/* Who the node pod is: the downward API fills the node settings both node processes read. */}}
{{- define "mesh.nodeEnv" -}}
- name: MESH_NODE_NAME
  valueFrom: {fieldRef: {fieldPath: spec.nodeName}}
- name: MESH_NODE_IP
  valueFrom: {fieldRef: {fieldPath: status.hostIP}}
- name: MESH_POD_NAMESPACE
  valueFrom: {fieldRef: {fieldPath: metadata.namespace}}
- name: MESH_SERVICE_ACCOUNT
  valueFrom: {fieldRef: {fieldPath: spec.serviceAccountName}}
- name: MESH_TRUST_DOMAIN
  value: {{ .Values.trustDomain | quote }}
{{ include "mesh.logEnv" . }}
{{- end -}}

{{/* MESH_TRACING_* from .Values.tracing (nothing when no endpoint is set). */}}
{{- define "mesh.tracingEnv" -}}
{{- with .Values.tracing }}
{{- if .endpoint }}
- name: MESH_TRACING_OTLP_ENDPOINT
  value: {{ .endpoint | quote }}
- name: MESH_TRACING_OTLP_PROTOCOL
  value: {{ .protocol | quote }}
- name: MESH_TRACING_SAMPLING
  value: {{ .sampling | quote }}
{{- end }}
{{- end }}
{{- end }}
