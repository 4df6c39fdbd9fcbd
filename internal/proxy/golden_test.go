package proxy

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// The golden files are the ruleset's documentation: for each feature, the whole table Render
// makes on node n1 (cluster CIDR 10.244.0.0/16), with every rule's bytecode. Regenerate with
//
//	go test ./internal/proxy/ -run TestGolden -update
//
// and read the diff: it is what the kernel will be given.
var updateGolden = flag.Bool("update", false, "rewrite the golden files in testdata/")

type goldenCase struct {
	name   string
	svcs   []*corev1.Service
	slices []*discoveryv1.EndpointSlice
}

func goldenCases() []goldenCase {
	np := func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeNodePort }
	return []goldenCase{
		{name: "clusterip",
			svcs: []*corev1.Service{
				svc("default", "one", "10.96.0.10", []corev1.ServicePort{tcp("http", 80)}),
				svc("default", "two", "10.96.0.11", []corev1.ServicePort{tcp("http", 80), udp("dns", 53)}),
				svc("default", "three", "10.96.0.12", []corev1.ServicePort{tcp("http", 80)}),
			},
			slices: []*discoveryv1.EndpointSlice{
				tcpSlice("one", 8080, ep{ip: "10.244.2.2", node: "n2"}),
				tcpSlice("two", 8080, ep{ip: "10.244.1.3", node: "n1"}, ep{ip: "10.244.2.3", node: "n2"}),
				slice("default", "two", "dns", corev1.ProtocolUDP, 5353, ep{ip: "10.244.1.3", node: "n1"}, ep{ip: "10.244.2.3", node: "n2"}),
				tcpSlice("three", 8080, ep{ip: "10.244.1.4", node: "n1"}, ep{ip: "10.244.2.4", node: "n2"}, ep{ip: "10.244.3.4", node: "n3"}),
			}},
		{name: "nodeport",
			svcs: []*corev1.Service{
				nodePortSvc("default", "np", "10.96.0.20", []corev1.ServicePort{tcp("http", 80), udp("dns", 53)}, 30080, 30053),
			},
			slices: []*discoveryv1.EndpointSlice{
				tcpSlice("np", 8080, ep{ip: "10.244.1.2", node: "n1"}, ep{ip: "10.244.2.2", node: "n2"}),
				slice("default", "np", "dns", corev1.ProtocolUDP, 5353, ep{ip: "10.244.2.2", node: "n2"}),
			}},
		{name: "loadbalancer",
			svcs: []*corev1.Service{
				lbSvc("default", "lb", "10.96.0.30", 80, 30081, "198.51.100.10", func(s *corev1.Service) {
					s.Spec.ExternalIPs = []string{"192.0.2.50"}
					s.Status.LoadBalancer.Ingress = append(s.Status.LoadBalancer.Ingress,
						corev1.LoadBalancerIngress{IP: "198.51.100.20", IPMode: ptr(corev1.LoadBalancerIPModeProxy)})
				}),
				svc("default", "ext", "10.96.0.31", []corev1.ServicePort{tcp("http", 80)}, func(s *corev1.Service) {
					s.Spec.ExternalIPs = []string{"192.0.2.60"}
				}),
			},
			slices: []*discoveryv1.EndpointSlice{
				tcpSlice("lb", 8080, ep{ip: "10.244.1.2", node: "n1"}, ep{ip: "10.244.2.2", node: "n2"}),
				tcpSlice("ext", 8080, ep{ip: "10.244.2.3", node: "n2"}),
			}},
		{name: "local-policies",
			svcs: []*corev1.Service{
				// eTP=Local with a local endpoint: external clients get it alone, pods get all
				lbSvc("default", "local", "10.96.0.40", 80, 30100, "198.51.100.40", localPolicy),
				// eTP=Local without a local endpoint: external clients are dropped here
				lbSvc("default", "remote", "10.96.0.41", 80, 30101, "198.51.100.41", localPolicy),
				// iTP=Local: the ClusterIP uses local endpoints only, or drops
				svc("default", "itp", "10.96.0.42", []corev1.ServicePort{tcp("http", 80)}, func(s *corev1.Service) {
					s.Spec.InternalTrafficPolicy = ptr(corev1.ServiceInternalTrafficPolicyLocal)
				}),
				svc("default", "itp-remote", "10.96.0.43", []corev1.ServicePort{tcp("http", 80)}, func(s *corev1.Service) {
					s.Spec.InternalTrafficPolicy = ptr(corev1.ServiceInternalTrafficPolicyLocal)
				}),
			},
			slices: []*discoveryv1.EndpointSlice{
				tcpSlice("local", 8080, ep{ip: "10.244.1.2", node: "n1"}, ep{ip: "10.244.2.2", node: "n2"}, ep{ip: "10.244.3.2", node: "n3"}),
				tcpSlice("remote", 8080, ep{ip: "10.244.2.3", node: "n2"}),
				tcpSlice("itp", 8080, ep{ip: "10.244.1.4", node: "n1"}, ep{ip: "10.244.2.4", node: "n2"}),
				tcpSlice("itp-remote", 8080, ep{ip: "10.244.2.5", node: "n2"}),
			}},
		{name: "affinity",
			svcs: []*corev1.Service{
				svc("default", "sticky", "10.96.0.50", []corev1.ServicePort{tcp("http", 80)}, np, func(s *corev1.Service) {
					s.Spec.Ports[0].NodePort = 30050
					s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
				}),
				svc("default", "short", "10.96.0.51", []corev1.ServicePort{tcp("http", 80)}, func(s *corev1.Service) {
					s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
					s.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: ptr(int32(60))}}
				}),
			},
			slices: []*discoveryv1.EndpointSlice{
				tcpSlice("sticky", 8080, ep{ip: "10.244.1.2", node: "n1"}, ep{ip: "10.244.2.2", node: "n2"}),
				tcpSlice("short", 8080, ep{ip: "10.244.2.3", node: "n2"}),
			}},
		{name: "no-endpoints",
			svcs: []*corev1.Service{
				svc("default", "empty", "10.96.0.60", []corev1.ServicePort{tcp("http", 80), udp("dns", 53)}),
				nodePortSvc("default", "empty-np", "10.96.0.61", []corev1.ServicePort{tcp("http", 80)}, 30061),
				lbSvc("default", "empty-lb", "10.96.0.62", 80, 30062, "198.51.100.62"),
			},
			slices: []*discoveryv1.EndpointSlice{
				tcpSlice("empty", 8080, ep{ip: "10.244.1.2", node: "n1", notReady: true}),
			}},
		{name: "hairpin-terminating",
			svcs: []*corev1.Service{
				// two local endpoints: both in the hairpin set
				svc("default", "local", "10.96.0.70", []corev1.ServicePort{tcp("http", 80)}),
				// no ready endpoint: the terminating, serving ones stand in; the others never
				svc("default", "rollout", "10.96.0.71", []corev1.ServicePort{tcp("http", 80)}),
			},
			slices: []*discoveryv1.EndpointSlice{
				tcpSlice("local", 8080, ep{ip: "10.244.1.2", node: "n1"}, ep{ip: "10.244.1.3", node: "n1"}, ep{ip: "10.244.2.2", node: "n2"}),
				tcpSlice("rollout", 8080, ep{ip: "10.244.1.5", node: "n1", terminating: true}, ep{ip: "10.244.2.5", node: "n2", terminating: true},
					ep{ip: "10.244.1.6", node: "n1", terminating: true, noServ: true}, ep{ip: "10.244.2.6", node: "n2", notReady: true}),
			}},
	}
}

func TestGolden(t *testing.T) {
	for _, c := range goldenCases() {
		t.Run(c.name, func(t *testing.T) {
			rs := Render(BuildSnapshot(c.svcs, c.slices, "n1"), Options{ClusterCIDR: clusterCIDR})
			if _, err := NewWalker(rs, renderNodes["n1"]); err != nil {
				t.Fatalf("the walker refuses the ruleset: %v", err)
			}
			got := rs.Text(true)
			if again := Render(BuildSnapshot(c.svcs, c.slices, "n1"), Options{ClusterCIDR: clusterCIDR}).Text(true); again != got {
				t.Fatal("Render is not deterministic")
			}
			path := filepath.Join("testdata", c.name+".golden")
			if *updateGolden {
				if err := os.MkdirAll("testdata", 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("%s differs (run with -update to accept):\n%s", path, lineDiff(string(want), got))
			}
		})
	}
}

// lineDiff shows the lines only in want (-) and only in got (+), in order, enough to see what
// changed without a diff library.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	// longest common subsequence, small inputs
	n, m := len(w), len(g)
	lcs := make([][]int, n+1)
	for i := range lcs {
		lcs[i] = make([]int, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if w[i] == g[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var b strings.Builder
	i, j := 0, 0
	for i < n || j < m {
		switch {
		case i < n && j < m && w[i] == g[j]:
			i++
			j++
		case j < m && (i == n || lcs[i][j+1] >= lcs[i+1][j]):
			b.WriteString("+ " + g[j] + "\n")
			j++
		default:
			b.WriteString("- " + w[i] + "\n")
			i++
		}
	}
	return b.String()
}
