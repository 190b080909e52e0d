-- id: TL-K8S-007
-- title: Secret or credential file read
-- severity: medium
-- tactic: Credential access
-- technique: Application credentials in configuration files
-- mitre: T1552.001
-- tables: file_activity
-- description: A process opened a mounted secret, password hashes, SSH private keys, cloud credentials or
--   Kubernetes PKI / kubeconfig files.
-- false_positives: The application the secret is mounted for reading it; login and sshd reading shadow.
-- suppress: 1h
-- dedup: path

SELECT * FROM file_activity
WHERE kind = 'file_open'
  AND (
    (path LIKE '%/run/secrets/%' AND path NOT LIKE '%/run/secrets/kubernetes.io/serviceaccount/%')
    OR path IN ('/etc/shadow', '/etc/gshadow')
    OR regexp_like(path, '/\.ssh/id_[a-z0-9]+$')
    OR regexp_like(path, '/\.(aws/credentials|kube/config|docker/config\.json)$')
    OR path LIKE '/etc/kubernetes/pki/%'
    OR path LIKE '/var/lib/kubelet/pki/%'
    OR path IN ('/etc/kubernetes/admin.conf', '/etc/kubernetes/kubelet.conf')
  )
  AND NOT (container_id IS NULL AND comm IN ('kubelet', 'kube-apiserver', 'sshd', 'login', 'sudo'))
