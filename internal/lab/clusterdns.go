package lab

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// ClusterDNSName is the Deployment that serves cluster DNS in kube-system; its Service is
// kube-dns at the tenth address of the Service CIDR, as in kubeadm clusters.
const ClusterDNSName = "podnet-dns"

// clusterDNSManifest is what a kubeadm cluster has for DNS, with podnet's own server: two
// replicas (the scheduler spreads them over nodes) behind the Service kube-dns.
func (d *Daemon) clusterDNSManifest() string {
	q := func(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: %[1]s
  namespace: kube-system
  labels: {k8s-app: kube-dns}
spec:
  replicas: 2
  selector:
    matchLabels: {k8s-app: kube-dns}
  template:
    metadata:
      labels: {k8s-app: kube-dns}
    spec:
      dnsPolicy: Default
      containers:
      - name: dns
        image: podnet/dns
        command: [%[2]s, dns, --api-socket, %[3]s, --listen, ':53', --domain, %[4]s, --metrics, ':9153']
        ports:
        - {name: dns, containerPort: 53, protocol: UDP}
        - {name: dns-tcp, containerPort: 53, protocol: TCP}
        - {name: metrics, containerPort: 9153, protocol: TCP}
---
apiVersion: v1
kind: Service
metadata:
  name: kube-dns
  namespace: kube-system
  labels: {k8s-app: kube-dns, kubernetes.io/name: CoreDNS}
spec:
  selector: {k8s-app: kube-dns}
  clusterIP: %[5]s
  ports:
  - {name: dns, port: 53, protocol: UDP, targetPort: 53}
  - {name: dns-tcp, port: 53, protocol: TCP, targetPort: 53}
  - {name: metrics, port: 9153, protocol: TCP, targetPort: 9153}
`, ClusterDNSName, q(d.selfExe), q(d.paths.APISocket()), q(d.cfg.Domain), d.dnsIP())
}

// ensureClusterDNS applies the cluster DNS objects through the same path as `podnet apply --wait`
// (idempotent: a restarted daemon changes nothing unless the podnet binary moved), so a lab is up
// only once its DNS answers.
func (d *Daemon) ensureClusterDNS(ctx context.Context) error {
	if d.selfExe == "" {
		return nil
	}
	objs, err := decodeRequest([]byte(d.clusterDNSManifest()), "cluster-dns")
	if err != nil {
		return fmt.Errorf("cluster DNS manifest: %w", err)
	}
	res, err := d.apply(ctx, objs)
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	return d.waitApplied(wctx, res)
}
