{{/*
Prefix of every object name: fullnameOverride, else the release name when it already contains the chart's name
(e.g. "tracelake"), else "<release>-<name>".
*/}}
{{- define "tracelake.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "tracelake.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels of one component: call with (dict "root" $ "component" "agent"). */}}
{{- define "tracelake.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tracelake.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Labels of every object: call with (dict "root" $ "component" "agent"); component may be empty. */}}
{{- define "tracelake.labels" -}}
app.kubernetes.io/name: {{ include "tracelake.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "tracelake.agentServiceAccount" -}}
{{- default (include "tracelake.fullname" .) .Values.agent.serviceAccount.name -}}
{{- end -}}

{{- define "tracelake.lakeServiceAccount" -}}
{{- default (printf "%s-lake" (include "tracelake.fullname" .)) .Values.lake.serviceAccount.name -}}
{{- end -}}

{{- define "tracelake.image" -}}
{{- printf "%s:%s" .Values.image.repository (toString (default .Chart.AppVersion .Values.image.tag)) -}}
{{- end -}}

{{/*
TOML from a values map (Helm's toToml writes every number as a float, which tracelake's integer fields refuse).
Keys sorted; a table's plain keys come before its sub-tables; null values are left out; whole floats are written as
integers; lists of maps become lists of inline tables.
*/}}
{{- define "tracelake.toml.key" -}}
{{- if regexMatch "^[A-Za-z0-9_-]+$" . -}}{{ . }}{{- else -}}{{ toJson . }}{{- end -}}
{{- end -}}

{{- define "tracelake.toml.value" -}}
{{- $k := kindOf . -}}
{{- if eq $k "string" -}}{{ toJson . }}
{{- else if eq $k "bool" -}}{{ . }}
{{- else if or (eq $k "float64") (eq $k "float32") -}}
{{- if eq (floor .) (float64 .) -}}{{ printf "%.0f" . }}{{- else -}}{{ . }}{{- end -}}
{{- else if eq $k "slice" -}}[{{ range $i, $v := . }}{{ if $i }}, {{ end }}{{ include "tracelake.toml.value" $v }}{{ end }}]
{{- else if eq $k "map" -}}{ {{- range $i, $key := keys . | sortAlpha }}{{ if $i }},{{ end }} {{ include "tracelake.toml.key" $key }} = {{ include "tracelake.toml.value" (get $ $key) }}{{ end }} }
{{- else -}}{{ . }}
{{- end -}}
{{- end -}}

{{/* A table's keys, then its sub-tables: (dict "path" (list ...) "table" map). */}}
{{- define "tracelake.toml.table" -}}
{{- $t := .table -}}
{{- $path := .path -}}
{{- range $key := keys $t | sortAlpha -}}
{{- $v := get $t $key -}}
{{- if not (or (kindIs "map" $v) (kindIs "invalid" $v)) }}
{{ include "tracelake.toml.key" $key }} = {{ include "tracelake.toml.value" $v }}
{{- end -}}
{{- end -}}
{{- range $key := keys $t | sortAlpha -}}
{{- $v := get $t $key -}}
{{- if kindIs "map" $v -}}
{{- $p := append $path (include "tracelake.toml.key" $key) -}}
{{- $plain := 0 -}}
{{- range $k2, $v2 := $v -}}{{- if not (or (kindIs "map" $v2) (kindIs "invalid" $v2)) -}}{{- $plain = add1 $plain -}}{{- end -}}{{- end -}}
{{- if or $plain (eq (len $v) 0) }}
[{{ join "." $p }}]
{{- end -}}
{{- include "tracelake.toml.table" (dict "path" $p "table" $v) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "tracelake.toml" -}}
{{- include "tracelake.toml.table" (dict "path" (list) "table" .) | trim -}}
{{- end -}}

{{/* The metrics port's probes: (dict "probe" .Values.agent.livenessProbe "path" "/healthz"). */}}
{{- define "tracelake.probe" -}}
httpGet:
  path: {{ .path }}
  port: metrics
{{ toYaml .probe }}
{{- end -}}
