package proxy

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/vishvananda/netns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/podnet/podnet/internal/nstest"
)

func needRoot(t *testing.T) { nstest.NeedRoot(t) }

// testNetns makes a uniquely named network namespace removed when the test ends.
func testNetns(t *testing.T, prefix string) (string, netns.NsHandle) {
	t.Helper()
	name, _ := nstest.New(t, prefix)
	h, err := netns.GetFromName(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return name, h
}

func sh(t *testing.T, cmd string) string {
	t.Helper()
	out, err := exec.Command("sh", "-c", cmd).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", cmd, err, out)
	}
	return string(out)
}

func sampleSnapshot() Snapshot {
	svcs := []*corev1.Service{
		svc("default", "web", "10.96.0.20", []corev1.ServicePort{tcp("http", 80), udp("dns", 53)}),
		svc("default", "np", "10.96.0.21", []corev1.ServicePort{tcp("", 80)}, func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeNodePort
			s.Spec.Ports[0].NodePort = 30080
		}),
		svc("default", "aff", "10.96.0.22", []corev1.ServicePort{tcp("", 80)}, func(s *corev1.Service) {
			s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
		}),
		svc("default", "empty", "10.96.0.23", []corev1.ServicePort{tcp("", 80)}),
	}
	slices := []*discoveryv1.EndpointSlice{
		slice("default", "web", "http", corev1.ProtocolTCP, 8080, ep{ip: "10.244.1.2", node: "n1"}, ep{ip: "10.244.2.2", node: "n2"}),
		slice("default", "web", "dns", corev1.ProtocolUDP, 5353, ep{ip: "10.244.1.2", node: "n1"}),
		slice("default", "np", "", corev1.ProtocolTCP, 8080, ep{ip: "10.244.1.3", node: "n1"}),
		slice("default", "aff", "", corev1.ProtocolTCP, 8080, ep{ip: "10.244.1.3", node: "n1"}, ep{ip: "10.244.1.4", node: "n1"}, ep{ip: "10.244.2.4", node: "n2"}),
	}
	return BuildSnapshot(svcs, slices, "n1")
}

// TestKernelApply: the kernel accepts the rendered table; a second Apply sends nothing; a new
// Kernel adopts the table without a change; a one-endpoint change is element-only.
func TestKernelApply(t *testing.T) {
	needRoot(t)
	name, h := testNetns(t, "kern")
	k, err := NewKernel(int(h))
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	rs := Render(sampleSnapshot(), Options{ClusterCIDR: clusterCIDR})
	st, err := k.Apply(rs)
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	if st.ElementsAdded == 0 || st.ChainsAdded == 0 {
		t.Fatalf("first apply added nothing: %+v", st)
	}
	st, err = k.Apply(rs)
	if err != nil || st.Changed() {
		t.Fatalf("second apply: %+v %v", st, err)
	}
	k2, err := NewKernel(int(h))
	if err != nil {
		t.Fatal(err)
	}
	defer k2.Close()
	st, err = k2.Apply(rs)
	if err != nil || st.Changed() || !st.Adopted {
		t.Fatalf("adopting apply: %+v %v", st, err)
	}
	// one endpoint more for web:http: element changes only
	snap := sampleSnapshot()
	snap.Ports[len(snap.Ports)-1].Endpoints = append(snap.Ports[len(snap.Ports)-1].Endpoints,
		Endpoint{Addr: mustAddr(t, "10.244.2.9"), Port: 8080, Ready: true, Serving: true, Node: "n2"})
	st, err = k2.Apply(Render(snap, Options{ClusterCIDR: clusterCIDR}))
	if err != nil {
		t.Fatal(err)
	}
	if st.ChainsRewritten != 0 || st.ElementsAdded == 0 {
		t.Fatalf("endpoint change: %+v", st)
	}
	out := sh(t, "ip netns exec "+name+" nft list chains 2>&1 || true")
	if !strings.Contains(out, "pick-v0-n3") {
		t.Logf("nft list chains: %s", out)
	}
	if err := k2.Delete(); err != nil {
		t.Fatal(err)
	}
}
