package e2e

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/podnet/podnet/internal/netnsutil"
)

const netpolYAML = `apiVersion: v1
kind: Namespace
metadata: {name: nsx, labels: {team: tx}}
---
apiVersion: v1
kind: Namespace
metadata: {name: nsy, labels: {team: ty}}
`

func netpolPod(ns, name, node string) string {
	return fmt.Sprintf(`---
apiVersion: v1
kind: Pod
metadata: {name: %[2]s, namespace: %[1]s, labels: {pod: %[2]s}}
spec:
  nodeName: %[3]s
  containers:
  - {name: w, image: podnet/workload, ports: [{name: serve-80, containerPort: 80}, {containerPort: 81}]}
`, ns, name, node)
}

// reachable opens one TCP connection from a pod and reads the workload's answer.
func reachable(lab, ns, pod, ip string, port int) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 800*time.Millisecond)
	defer cancel()
	c, err := netnsutil.DialContext(ctx, podNetns(lab, ns, pod), "tcp", net.JoinHostPort(ip, fmt.Sprint(port)))
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	fmt.Fprintf(c, "GET / HTTP/1.0\r\n\r\n")
	b := make([]byte, 12)
	n, _ := c.Read(b)
	return strings.HasPrefix(string(b[:n]), "HTTP/1.")
}

// TestNetworkPolicy enforces policies on every node with real connections across nodes.
func TestNetworkPolicy(t *testing.T) {
	needRoot(t)
	lab := upLab(t, "e2ep")
	yaml := netpolYAML + netpolPod("nsx", "a", "node-1") + netpolPod("nsx", "b", "node-2") + netpolPod("nsy", "c", "node-1")
	applyYAML(t, lab, yaml, "--wait")
	ip := map[string]string{}
	ns := map[string]string{"a": "nsx", "b": "nsx", "c": "nsy"}
	for _, n := range []string{"nsx", "nsy"} {
		for _, p := range getPods(t, lab, n) {
			ip[p.Name] = p.Status.PodIP
		}
	}
	matrix := func(port int) map[string]bool {
		m := map[string]bool{}
		for _, f := range []string{"a", "b", "c"} {
			for _, to := range []string{"a", "b", "c"} {
				if f != to {
					m[f+">"+to] = reachable(lab, ns[f], f, ip[to], port)
				}
			}
		}
		return m
	}
	expect := func(what string, port int, denied ...string) {
		t.Helper()
		got := matrix(port)
		for pair, ok := range got {
			want := true
			for _, d := range denied {
				want = want && d != pair
			}
			if ok != want {
				t.Errorf("%s: %s on port %d: reachable %v, want %v", what, pair, port, ok, want)
			}
		}
	}
	expect("no policies", 80)

	// b (node-2) takes port 80 only from pods in namespace x, by named port; nothing on 81
	applyYAML(t, lab, `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: b-from-x, namespace: nsx}
spec:
  podSelector: {matchLabels: {pod: b}}
  ingress:
  - from: [{namespaceSelector: {matchLabels: {team: tx}}}]
    ports: [{port: serve-80}]
`, "--wait")
	expect("b-from-x", 80, "c>b")
	expect("b-from-x", 81, "c>b", "a>b")

	// a (node-1) may not send anything anywhere (egress isolation), replies to its clients pass
	applyYAML(t, lab, `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: a-no-egress, namespace: nsx}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Egress]
`, "--wait")
	expect("a-no-egress", 80, "c>b", "a>b", "a>c")

	// labels are policy: relabelling namespace y into team x lets c reach b
	mustPodnet(t, "label", "--lab", lab, "namespace", "nsy", "team=tx", "--overwrite", "--wait")
	expect("y relabelled", 80, "a>b", "a>c")

	mustPodnet(t, "delete", "networkpolicy", "a-no-egress", "--lab", lab, "-n", "nsx", "--wait")
	mustPodnet(t, "delete", "networkpolicy", "b-from-x", "--lab", lab, "-n", "nsx", "--wait")
	expect("policies deleted", 81)
}
