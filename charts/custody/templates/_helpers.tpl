{{/* The release's resource name prefix: custody, or <release>-custody. */}}
{{- define "custody.fullname" -}}
{{- if contains "custody" .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-custody" .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "custody.labels" -}}
app.kubernetes.io/name: custody
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: custody
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "custody.selectorLabels" -}}
app.kubernetes.io/name: custody
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: controller-manager
{{- end -}}

{{- define "custody.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "custody.webhookService" -}}{{ include "custody.fullname" . }}-webhook{{- end -}}
{{- define "custody.webhookSecret" -}}{{ include "custody.fullname" . }}-webhook-cert{{- end -}}
{{- define "custody.mutatingWebhook" -}}{{ include "custody.fullname" . }}-{{ .Release.Namespace }}-mutating{{- end -}}
{{- define "custody.validatingWebhook" -}}{{ include "custody.fullname" . }}-{{ .Release.Namespace }}-validating{{- end -}}

{{/* The documents of a multi-document YAML file of the chart, parsed. */}}
{{- define "custody.documents" -}}
{{- $docs := list -}}
{{- range $doc := splitList "\n---" (.root.Files.Get .path) -}}
{{- $obj := fromYaml $doc -}}
{{- if $obj.kind -}}{{- $docs = append $docs $obj -}}{{- end -}}
{{- end -}}
{{- toJson $docs -}}
{{- end -}}
