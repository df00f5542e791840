{{/* Names: release-scoped so two releases (for example one per team namespace) never collide. */}}
{{- define "garfield.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "garfield.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "garfield.selectorLabels" -}}
app.kubernetes.io/name: {{ include "garfield.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "garfield.labels" -}}
{{ include "garfield.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: garfield
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "garfield.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "garfield.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name must name an existing ServiceAccount when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The operator image: digest wins over tag; tag defaults to the chart's appVersion. */}}
{{- define "garfield.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The image job pods run by default. */}}
{{- define "garfield.runtimeImage" -}}
{{- default (include "garfield.image" .) .Values.runtimeImage -}}
{{- end -}}

{{- define "garfield.peeringName" -}}
{{- default (include "garfield.fullname" .) .Values.peering.name -}}
{{- end -}}

{{/* Namespaces the operator watches, as a JSON list (empty when watching all namespaces). */}}
{{- define "garfield.watchedNamespaces" -}}
{{- if .Values.watch.allNamespaces -}}
{{- list | toJson -}}
{{- else if .Values.watch.namespaces -}}
{{- .Values.watch.namespaces | uniq | toJson -}}
{{- else -}}
{{- list .Release.Namespace | toJson -}}
{{- end -}}
{{- end -}}

{{/* Namespaces whose job pods get NetworkPolicies, as a JSON list. */}}
{{- define "garfield.policyNamespaces" -}}
{{- if .Values.networkPolicy.namespaces -}}
{{- .Values.networkPolicy.namespaces | uniq | toJson -}}
{{- else if .Values.watch.allNamespaces -}}
{{- fail "networkPolicy.namespaces must list the namespaces to protect when watch.allNamespaces is true (NetworkPolicies are namespaced)" -}}
{{- else -}}
{{- include "garfield.watchedNamespaces" . -}}
{{- end -}}
{{- end -}}

{{/* Chart-wide consistency checks the JSON schema cannot express. */}}
{{- define "garfield.validate" -}}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.service.enabled) -}}
{{- fail "metrics.serviceMonitor.enabled needs metrics.service.enabled=true (the ServiceMonitor selects that Service)" -}}
{{- end -}}
{{- if and .Values.watch.allNamespaces .Values.watch.namespaces -}}
{{- fail "set either watch.allNamespaces=true or watch.namespaces, not both" -}}
{{- end -}}
{{- end -}}
