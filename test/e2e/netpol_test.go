package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

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

	// explain says why, from the same model: c (namespace y) is not in team x.
	out := mustPodnet(t, "explain", "--lab", lab, "--from", "nsy/c", "--to", "nsx/b:80")
	for _, want := range []string{"DENY", "nsx/b-from-x spec.ingress[0]: from does not match, ports match"} {
		if !strings.Contains(out, want) {
			t.Errorf("explain nsy/c -> nsx/b:80 lacks %q:\n%s", want, out)
		}
	}
	out = mustPodnet(t, "explain", "--lab", lab, "--from", "nsx/a", "--to", "nsx/b")
	for _, want := range []string{"ALLOW " + ip["a"] + " -> " + ip["b"] + " TCP/80", "allowed by nsx/b-from-x spec.ingress[0]: from[0], ports[0]",
		"DENY " + ip["a"] + " -> " + ip["b"] + " TCP/81", "ports do not match TCP/81"} {
		if !strings.Contains(out, want) {
			t.Errorf("explain nsx/a -> nsx/b lacks %q:\n%s", want, out)
		}
	}
	if _, stderr, err := podnet("explain", "--lab", lab, "--from", "nsx/nope", "--to", "nsx/b:80"); err == nil || !strings.Contains(stderr, "no pod nope in namespace nsx") {
		t.Errorf("explain from a missing pod: %v %q", err, stderr)
	}

	// The denied connections are in the verdict log, logged by b's node with the deciding
	// policy, and counted for it on that node's metrics port.
	waitFor(t, "c -> b:80 in the verdict log", 5*time.Second, func() error {
		out := mustPodnet(t, "flows", "--lab", lab, "--denied", "--pod", "nsx/b", "-o", "json")
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			var r struct {
				Node, Direction, Verdict, SrcPod, DstPod, Protocol string
				Src, Dst                                           string
				DstPort                                            int
				Policies                                           []string
			}
			if json.Unmarshal([]byte(line), &r) == nil && r.SrcPod == "nsy/c" && r.DstPort == 80 {
				if r.Node != "node-2" || r.Direction != "ingress" || r.Verdict != "denied" || r.DstPod != "nsx/b" ||
					r.Src != ip["c"] || r.Dst != ip["b"] || r.Protocol != "TCP" || strings.Join(r.Policies, ",") != "nsx/b-from-x" {
					return fmt.Errorf("record %s", line)
				}
				return nil
			}
		}
		return fmt.Errorf("no record of nsy/c -> nsx/b:80 in\n%s", out)
	})
	if out := mustPodnet(t, "flows", "--lab", lab, "--denied", "--node", "node-2"); !strings.Contains(out, "DENIED ingress TCP nsy/c") || !strings.Contains(out, "by nsx/b-from-x") {
		t.Errorf("podnet flows text:\n%s", out)
	}
	metric := `podnet_policy_denied_packets_total{direction="ingress",namespace="nsx",policy="b-from-x"}`
	if v := nodeMetric(t, lab, "node-2", metric); v < 1 {
		t.Errorf("%s on node-2 = %v, want ≥ 1", metric, v)
	}

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

// TestNetworkPolicyFailClosed creates a pod under a policy that denies a stranger and probes
// every free address of its node's pod CIDR from the moment before the pod exists: the
// stranger never gets an answer, while a friend the policy allows does (which shows the probes
// would have seen an open pod).
func TestNetworkPolicyFailClosed(t *testing.T) {
	needRoot(t)
	lab := upLab(t, "e2efc")
	applyYAML(t, lab, `apiVersion: v1
kind: Namespace
metadata: {name: nsf}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: friends-only, namespace: nsf}
spec:
  podSelector: {}
  ingress:
  - from: [{podSelector: {matchLabels: {role: friend}}}]
`+netpolPod("nsf", "friend", "node-2")+netpolPod("nsf", "stranger", "node-2")+netpolPod("nsf", "neighbour", "node-1"), "--wait")
	mustPodnet(t, "label", "--lab", lab, "pod", "-n", "nsf", "friend", "role=friend", "--wait")

	// Every address of node-1's pod CIDR that no pod holds yet: the new pod gets one of them.
	out := mustPodnet(t, "get", "nodes", "--lab", lab, "-o", "json")
	var nodes struct {
		Items []struct {
			Metadata struct{ Name string }
			Spec     struct{ PodCIDR string }
		}
	}
	if err := json.Unmarshal([]byte(out), &nodes); err != nil {
		t.Fatal(err)
	}
	var cidr netip.Prefix
	for _, n := range nodes.Items {
		if n.Metadata.Name == "node-1" {
			cidr = netip.MustParsePrefix(n.Spec.PodCIDR)
		}
	}
	used := map[string]bool{}
	for _, ns := range []string{"nsf", "kube-system", "default"} {
		for _, p := range getPods(t, lab, ns) {
			used[p.Status.PodIP] = true
		}
	}
	var free []string
	for a := cidr.Masked().Addr().Next().Next(); len(free) < 24 && cidr.Contains(a); a = a.Next() {
		if !used[a.String()] {
			free = append(free, a.String())
		}
	}

	var mu sync.Mutex
	answered := map[string]int{} // client>address → answers
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, client := range []string{"friend", "stranger", "neighbour"} {
		for _, a := range free {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					dctx, dcancel := context.WithTimeout(ctx, 150*time.Millisecond)
					c, err := netnsutil.DialContext(dctx, podNetns(lab, "nsf", client), "tcp", net.JoinHostPort(a, "80"))
					dcancel()
					if err != nil {
						if dctx.Err() == nil {
							time.Sleep(20 * time.Millisecond) // refused: no pod there yet
						}
						continue
					}
					c.Close()
					mu.Lock()
					answered[client+">"+a]++
					mu.Unlock()
				}
			}()
		}
	}
	defer func() { cancel(); wg.Wait() }()
	time.Sleep(300 * time.Millisecond) // the probes are running before the pod exists
	applyYAML(t, lab, netpolPod("nsf", "newcomer", "node-1"))
	var newIP string
	waitFor(t, "the friend reaches the new pod", 30*time.Second, func() error {
		for _, p := range getPods(t, lab, "nsf") {
			if p.Name == "newcomer" {
				newIP = p.Status.PodIP
			}
		}
		mu.Lock()
		defer mu.Unlock()
		if newIP == "" || answered["friend>"+newIP] == 0 {
			return fmt.Errorf("newcomer IP %q, friend answers %d", newIP, answered["friend>"+newIP])
		}
		return nil
	})
	time.Sleep(500 * time.Millisecond)
	cancel()
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if !slices.Contains(free, newIP) {
		t.Fatalf("the new pod got %s, not one of the probed addresses %v", newIP, free)
	}
	for _, client := range []string{"stranger", "neighbour"} {
		if n := answered[client+">"+newIP]; n > 0 {
			t.Errorf("%s got %d answers from the new pod %s, which its policy denies", client, n, newIP)
		}
	}
	t.Logf("new pod %s: friend answered %d times, stranger and neighbour never", newIP, answered["friend>"+newIP])
}

// nodeMetric reads one sample from a node agent's metrics port (node-ip:10249, inside the node's
// namespace); -1 when it is not there.
func nodeMetric(t *testing.T, lab, node, sample string) float64 {
	t.Helper()
	out := mustPodnet(t, "get", "node", node, "--lab", lab, "-o", "json")
	var n corev1.Node
	if err := json.Unmarshal([]byte(out), &n); err != nil {
		t.Fatal(err)
	}
	var addr string
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			addr = a.Address
		}
	}
	tr := &http.Transport{DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
		return netnsutil.DialContext(ctx, "/var/run/netns/"+lab+"."+node, network, a)
	}}
	resp, err := (&http.Client{Transport: tr, Timeout: 2 * time.Second}).Get("http://" + net.JoinHostPort(addr, "10249") + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, sample+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err == nil {
				return f
			}
		}
	}
	return -1
}
