{{/*
An image reference from { repository, tag }: the tag defaults to the chart's appVersion.
Call: include "enbi.image" (list .Values.image .)
*/}}
{{- define "enbi.image" -}}
{{- $image := index . 0 -}}
{{- $root := index . 1 -}}
{{- printf "%s:%s" $image.repository (toString (default $root.Chart.AppVersion $image.tag)) -}}
{{- end -}}

{{- define "enbi.pullPolicy" -}}
{{- with .pullPolicy }}
imagePullPolicy: {{ . }}
{{- end }}
{{- end -}}

{{/*
The controller's config.yaml: .Values.config with the three settings the chart owns. The namespace must be
the release's (the Role, the RoleBinding and the agent's NixBuild reader live there) and the two images are
the chart's (the agent's Nix daemon runs the builder image too).
*/}}
{{- define "enbi.config" -}}
{{- $config := deepCopy .Values.config -}}
{{- range $key, $instead := dict "namespace" "install into the release namespace instead (helm install -n NAMESPACE)" "builderImage" "set builderImage.repository and builderImage.tag instead" "importerImage" "set image.repository and image.tag instead" -}}
{{- if hasKey $config $key -}}
{{- fail (printf "config.%s is set by the chart: %s" $key $instead) -}}
{{- end -}}
{{- end -}}
{{- $_ := set $config "namespace" .Release.Namespace -}}
{{- $_ = set $config "builderImage" (include "enbi.image" (list .Values.builderImage .)) -}}
{{- $_ = set $config "importerImage" (include "enbi.image" (list .Values.image .)) -}}
{{- toYaml $config -}}
{{- end -}}

{{/* Settings that only make sense together, checked where the schema cannot. */}}
{{- define "enbi.validate" -}}
{{- $secretFile := dig "webhook" "secretFile" "" .Values.config -}}
{{- if and .Values.webhook.secret .Values.webhook.existingSecret -}}
{{- fail "webhook: set either webhook.secret (the chart writes the Secret enbi-webhook) or webhook.existingSecret (a Secret you manage), not both" -}}
{{- end -}}
{{- if and (or .Values.webhook.secret .Values.webhook.existingSecret) (not $secretFile) -}}
{{- fail "webhook: a secret is given but config.webhook.secretFile is unset, so the webhook is off: set config.webhook.secretFile to /etc/enbi/webhook/secret" -}}
{{- end -}}
{{- with .Values.config.containerdSocket -}}
{{- if not (hasPrefix (printf "%s/" (trimSuffix "/" $.Values.agent.containerdSocketDir)) .) -}}
{{- fail (printf "config.containerdSocket %s is not inside agent.containerdSocketDir %s, the host directory the agent mounts: set agent.containerdSocketDir to its directory" . $.Values.agent.containerdSocketDir) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
The containerd sockets a build Job may mount (deploy/build-jobs.yaml), as a JSON list: where each distribution
puts it (src/cluster/socket.ts), and config.containerdSocket when set.
*/}}
{{- define "enbi.buildJobSockets" -}}
{{- $sockets := list "/run/containerd/containerd.sock" "/run/k3s/containerd/containerd.sock" "/run/k0s/containerd.sock" "/var/snap/microk8s/common/run/containerd.sock" -}}
{{- with .Values.config.containerdSocket -}}
{{- $sockets = append $sockets . | uniq -}}
{{- end -}}
{{- toJson $sockets -}}
{{- end -}}
