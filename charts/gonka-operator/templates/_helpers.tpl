{{/* Chart name (nameOverride wins). */}}
{{- define "gonka-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name of the release's objects. */}}
{{- define "gonka-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "gonka-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels: also the labels GONKA_OPERATOR_POD_LABELS names, so the NetworkPolicies the
operator creates open the admin port (9200) to exactly these pods. */}}
{{- define "gonka-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gonka-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "gonka-operator.labels" -}}
helm.sh/chart: {{ include "gonka-operator.chart" . }}
{{ include "gonka-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: gonka-operator
{{- end }}

{{/* `k=v,k2=v2` of the selector labels, for GONKA_OPERATOR_POD_LABELS. */}}
{{- define "gonka-operator.podLabelsEnv" -}}
{{- $labels := include "gonka-operator.selectorLabels" . | fromYaml }}
{{- $pairs := list }}
{{- range $k := keys $labels | sortAlpha }}
{{- $pairs = append $pairs (printf "%s=%s" $k (get $labels $k)) }}
{{- end }}
{{- join "," $pairs }}
{{- end }}

{{- define "gonka-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "gonka-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "gonka-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* True when the ServiceMonitor is wanted and the cluster serves its API. */}}
{{- define "gonka-operator.serviceMonitorAvailable" -}}
{{- if and .Values.operator.enabled .Values.metrics.enabled .Values.metrics.serviceMonitor.enabled (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1/ServiceMonitor") }}true{{ end }}
{{- end }}

{{/*
The operator's permissions: one list of rules, used by the ClusterRole (all namespaces) or by one
Role per watched namespace. Every verb is used by a code path named in the chart README
("RBAC"); tests/chart/test_operator_rbac.py runs the operator with exactly these rules and
records every request it makes.
*/}}
{{- define "gonka-operator.rules" -}}
# kopf: watch both kinds; patch = its finalizer gonka.ai/registry-cleanup and gonka.ai/* annotations
- apiGroups: [gonka.ai]
  resources: [networknodes, inferencenodes]
  verbs: [list, watch, patch]
# get: a NetworkNode missing from the index (right after a start, or deleted) is read before an
# InferenceNode's deregistration is called moot (registry.network_node_gone)
- apiGroups: [gonka.ai]
  resources: [networknodes]
  verbs: [get]
# status written by the operator (merge-patch of the status subresource)
- apiGroups: [gonka.ai]
  resources: [networknodes/status, inferencenodes/status]
  verbs: [patch]
{{- if .Values.rbac.ownerReferencesPermissionEnforcement }}
# OwnerReferencesPermissionEnforcement: children's blockOwnerDeletion owner references
- apiGroups: [gonka.ai]
  resources: [networknodes/finalizers, inferencenodes/finalizers]
  verbs: [update]
{{- end }}
# children, sent with server-side apply (patch; create when the apply creates the object) and
# watched (status feedback, drift repair); InferenceNode children it cannot merge into are replaced
# (delete). StatefulSets and PVCs are never deleted by the operator.
# (get: the ML Deployment and the preload Job are read once before their first watch event, so a
# serving ML pod is never scaled to 0 for lack of facts)
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch, delete]
# the HF-cache preload Job (spec.hfCache.preload): its status is status.cache; the previous model's Job
# is pruned (delete). Jobs are created once, never patched (get: the existing one on 409)
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, list, watch, create, delete]
- apiGroups: [apps]
  resources: [statefulsets]
  verbs: [list, watch, create, patch]
- apiGroups: [""]
  resources: [services]
  verbs: [list, watch, create, patch, delete]
- apiGroups: [""]
  resources: [persistentvolumeclaims]
  verbs: [list, watch, create, patch]
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies]
  verbs: [list, watch, create, patch, delete]
# the ML Deployment's PodDisruptionBudget: applied when a PoC window opens, deleted (pruned) when
# it closes or the node switches to spec.external; watched (drift); read once after a restart
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [get, list, watch, create, patch, delete]
# the ML pods' nginx config (one per NetworkNode, or per adminURL InferenceNode): applied, watched
# (drift), pruned (delete: an adminURL node switched to networkNodeRef)
- apiGroups: [""]
  resources: [configmaps]
  verbs: [list, watch, create, patch, delete]
# pods: only watched (the scheduler's verdict on a Pending ML pod: InsufficientGPU, Unschedulable)
- apiGroups: [""]
  resources: [pods]
  verbs: [list, watch]
# the running preload pod's last log lines: bytes/files fetched so far on status.cache
- apiGroups: [""]
  resources: [pods/log]
  verbs: [get]
# Events the operator records on its custom resources
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end }}

{{/* kopf's resource observer: notices CRDs that appear/change (cluster-scoped, read-only). */}}
{{- define "gonka-operator.crdObserverRules" -}}
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [list, watch]
{{- end }}

{{/* Metadata of the custom resources rendered from values (list root item). */}}
{{- define "gonka-operator.crMetadata" -}}
{{- $root := index . 0 -}}
{{- $item := index . 1 -}}
name: {{ required "every networkNodes/inferenceNodes item needs a name" $item.name }}
namespace: {{ default $root.Release.Namespace $item.namespace }}
labels:
  helm.sh/chart: {{ include "gonka-operator.chart" $root }}
  app.kubernetes.io/instance: {{ $root.Release.Name }}
  app.kubernetes.io/managed-by: {{ $root.Release.Service }}
  app.kubernetes.io/part-of: gonka-operator
  {{- with $item.labels }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
annotations:
  # Argo CD: the CRD may be applied in the same sync (or by another Application).
  argocd.argoproj.io/sync-options: SkipDryRunOnMissingResource=true
  {{- with $item.annotations }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end }}
