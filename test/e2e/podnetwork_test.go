package e2e

import (
	"fmt"
	"net"
	"strings"
	"testing"
)

// sixPods are two pods per node on three nodes, each serving TCP 8080 (HTTP) and UDP 9000.
func sixPods() string {
	var b strings.Builder
	b.WriteString("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: net\n")
	for n := 1; n <= 3; n++ {
		for _, s := range []string{"a", "b"} {
			fmt.Fprintf(&b, `---
apiVersion: v1
kind: Pod
metadata:
  name: p%d%s
  namespace: net
  labels: {app: mesh}
spec:
  nodeName: node-%d
  containers:
  - name: srv
    image: podnet/workload
    ports:
    - containerPort: 8080
    - containerPort: 9000
      protocol: UDP
`, n, s, n)
		}
	}
	return b.String()
}

// TestPodToPod is the first principle of the Kubernetes network model, per backend: every pod
// reaches every other pod's IP, on its node and across nodes, over TCP and UDP, and the server
// sees the client's own pod IP (no NAT).
func TestPodToPod(t *testing.T) {
	needRoot(t)
	for _, backend := range []string{"vxlan", "host-gw"} {
		t.Run(backend, func(t *testing.T) {
			lab := upLab(t, "e2e"+backend[:1], "--nodes", "3", "--backend", backend)
			applyYAML(t, lab, sixPods(), "--wait")
			pods := getPods(t, lab, "net")
			if len(pods) != 6 {
				t.Fatalf("want 6 pods, got %d", len(pods))
			}
			for _, from := range pods {
				for _, to := range pods {
					if from.Name == to.Name {
						continue
					}
					for _, pp := range []struct{ proto, port string }{{"tcp", "8080"}, {"udp", "9000"}} {
						r, err := probe(lab, "net", from.Name, pp.proto, net.JoinHostPort(to.Status.PodIP, pp.port))
						if err != nil {
							t.Errorf("%s (%s) -> %s (%s) %s: %v", from.Name, from.Spec.NodeName, to.Name, to.Spec.NodeName, pp.proto, err)
							continue
						}
						if r.Pod != to.Name || r.Node != to.Spec.NodeName {
							t.Errorf("%s -> %s %s: answered by %s on %s", from.Name, to.Name, pp.proto, r.Pod, r.Node)
						}
						if r.ClientIP != from.Status.PodIP {
							t.Errorf("%s -> %s %s: server saw %s, want the client's pod IP %s (no NAT)", from.Name, to.Name, pp.proto, r.ClientIP, from.Status.PodIP)
						}
					}
				}
			}
			testAgentRestart(t, lab, pods)
		})
	}
}
