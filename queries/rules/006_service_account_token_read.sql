-- id: TL-K8S-006
-- title: Service account token read in a container
-- severity: medium
-- tactic: Credential access
-- technique: Container service account
-- mitre: T1528
-- tables: file_activity
-- description: A process opened the pod's Kubernetes service account token. With it an attacker talks to
--   the API server as the pod.
-- false_positives: Applications that use the Kubernetes API (operators, controllers, client-go based
--   tools) read the token at start and on rotation.
-- suppress: 1h

SELECT * FROM file_activity
WHERE kind = 'file_open'
  AND container_id IS NOT NULL
  AND path LIKE '%/run/secrets/kubernetes.io/serviceaccount/token'
