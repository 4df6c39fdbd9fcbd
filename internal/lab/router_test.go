package lab

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"reflect"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
)

func testNode(i int, ready bool) *corev1.Node {
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: NodeName(i)},
		Status: corev1.NodeStatus{
			Addresses:  []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: fmt.Sprintf("172.30.0.%d", 10+i)}},
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: st}}}}
}

func lbSvc(name string, ips []string, etp corev1.ServiceExternalTrafficPolicy, mod func(*corev1.Service)) *corev1.Service {
	s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, ExternalTrafficPolicy: etp}}
	for _, ip := range ips {
		s.Spec.Type = corev1.ServiceTypeLoadBalancer
		s.Status.LoadBalancer.Ingress = append(s.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: ip})
	}
	if mod != nil {
		mod(s)
	}
	return s
}

func testSlice(svc string, eps ...string) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: svc + "-" + rand.String(5),
		Labels: map[string]string{discoveryv1.LabelServiceName: svc}}, AddressType: discoveryv1.AddressTypeIPv4}
	for _, e := range eps { // "node-1" ready, "node-2-" not ready
		node, ready := strings.TrimSuffix(e, "-"), !strings.HasSuffix(e, "-")
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{"10.244.0.9"}, NodeName: &node,
			Conditions: discoveryv1.EndpointConditions{Ready: &ready}})
	}
	return s
}

func TestExternalRoutes(t *testing.T) {
	nodes := []*corev1.Node{testNode(1, true), testNode(2, true), testNode(3, false)}
	cluster, local := corev1.ServiceExternalTrafficPolicyCluster, corev1.ServiceExternalTrafficPolicyLocal
	cases := []struct {
		name   string
		svcs   []*corev1.Service
		slices []*discoveryv1.EndpointSlice
		want   map[string][]string
	}{
		{"Cluster: every Ready node", []*corev1.Service{lbSvc("a", []string{"172.31.255.1"}, cluster, nil)}, nil,
			map[string][]string{"172.31.255.1": {"172.30.0.11", "172.30.0.12"}}},
		{"pending LoadBalancer: no route", []*corev1.Service{lbSvc("a", nil, cluster, nil)}, nil, map[string][]string{}},
		{"Local: nodes with a ready endpoint", []*corev1.Service{lbSvc("a", []string{"172.31.255.1"}, local, nil)},
			[]*discoveryv1.EndpointSlice{testSlice("a", "node-2", "node-2", "node-1-"), testSlice("b", "node-1")},
			map[string][]string{"172.31.255.1": {"172.30.0.12"}}},
		{"Local: endpoints only on a NotReady node", []*corev1.Service{lbSvc("a", []string{"172.31.255.1"}, local, nil)},
			[]*discoveryv1.EndpointSlice{testSlice("a", "node-3")}, map[string][]string{}},
		{"Local: no ready endpoint, no route", []*corev1.Service{lbSvc("a", []string{"172.31.255.1"}, local, nil)},
			[]*discoveryv1.EndpointSlice{testSlice("a", "node-1-")}, map[string][]string{}},
		{"externalIPs of a ClusterIP Service", []*corev1.Service{lbSvc("e", nil, "", func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeClusterIP
			s.Spec.ExternalIPs = []string{"192.0.2.10", "192.0.2.11"}
		})}, nil, map[string][]string{"192.0.2.10": {"172.30.0.11", "172.30.0.12"}, "192.0.2.11": {"172.30.0.11", "172.30.0.12"}}},
		{"externalIPs with Local", []*corev1.Service{lbSvc("e", nil, local, func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeNodePort
			s.Spec.ExternalIPs = []string{"192.0.2.10"}
		})}, []*discoveryv1.EndpointSlice{testSlice("e", "node-1")}, map[string][]string{"192.0.2.10": {"172.30.0.11"}}},
		{"ingress of a Service no longer LoadBalancer is ignored", []*corev1.Service{lbSvc("a", []string{"172.31.255.1"}, cluster, func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeClusterIP
		})}, nil, map[string][]string{}},
		{"two Services on one address share it", []*corev1.Service{
			lbSvc("a", []string{"172.31.255.7"}, local, nil),
			lbSvc("b", []string{"172.31.255.7"}, local, nil)},
			[]*discoveryv1.EndpointSlice{testSlice("a", "node-1"), testSlice("b", "node-2")},
			map[string][]string{"172.31.255.7": {"172.30.0.11", "172.30.0.12"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := ExternalRoutes(tc.svcs, tc.slices, nodes)
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestPickLoadBalancerIP(t *testing.T) {
	pool := mustCIDR("172.31.255.0/29") // .1 … .6
	at := func(i int) metav1.Time { return metav1.Unix(int64(1000+i), 0) }
	other := lbSvc("other", []string{"172.31.255.1"}, "", func(s *corev1.Service) { s.CreationTimestamp = at(0) })
	asks := lbSvc("asks", nil, "", func(s *corev1.Service) { s.Spec.LoadBalancerIP = "172.31.255.3"; s.CreationTimestamp = at(1) })
	ext := lbSvc("ext", nil, "", func(s *corev1.Service) {
		s.Spec.Type = corev1.ServiceTypeClusterIP
		s.Spec.ExternalIPs = []string{"172.31.255.2"}
		s.CreationTimestamp = at(2)
	})
	world := []*corev1.Service{other, asks, ext}
	cases := []struct {
		name    string
		svc     *corev1.Service
		want    string
		wantErr string
	}{
		{"lowest free", lbSvc("new", nil, "", nil), "172.31.255.4", ""},
		{"keeps its address", lbSvc("new", []string{"172.31.255.6"}, "", nil), "172.31.255.6", ""},
		{"requested and free", lbSvc("new", nil, "", func(s *corev1.Service) { s.Spec.LoadBalancerIP = "172.31.255.5" }), "172.31.255.5", ""},
		{"requested, its own", asks, "172.31.255.3", ""},
		{"requested, taken", lbSvc("new", nil, "", func(s *corev1.Service) { s.Spec.LoadBalancerIP = "172.31.255.1" }), "",
			"spec.loadBalancerIP 172.31.255.1 is already used by service default/other"},
		{"requested, out of range", lbSvc("new", nil, "", func(s *corev1.Service) { s.Spec.LoadBalancerIP = "10.1.2.3" }), "",
			"not in the lab's load-balancer range 172.31.255.0/29"},
		{"requested broadcast", lbSvc("new", nil, "", func(s *corev1.Service) { s.Spec.LoadBalancerIP = "172.31.255.7" }), "",
			"not in the lab's load-balancer range"},
		{"an address outside the pool is not kept", lbSvc("new", []string{"10.0.0.1"}, "", nil), "172.31.255.4", ""},
		{"a younger Service does not keep a contested address", lbSvc("new", []string{"172.31.255.1"}, "", func(s *corev1.Service) { s.CreationTimestamp = at(9) }),
			"172.31.255.4", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			all := append([]*corev1.Service{tc.svc}, world...)
			if tc.svc == asks {
				all = world
			}
			got, err := pickLoadBalancerIP(pool, tc.svc, lbClaims(all, nil))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q %v, want %q", got, err, tc.want)
			}
		})
	}
	// A full pool.
	var full []*corev1.Service
	for i := 1; i <= 6; i++ {
		full = append(full, lbSvc(fmt.Sprint("s", i), []string{fmt.Sprintf("172.31.255.%d", i)}, "", nil))
	}
	n := lbSvc("late", nil, "", nil)
	if _, err := pickLoadBalancerIP(pool, n, lbClaims(append(full, n), nil)); err == nil || !strings.Contains(err.Error(), "no address left") {
		t.Fatalf("full pool: %v", err)
	}
	// What the controller just wrote counts before its lister shows it.
	if got, _ := pickLoadBalancerIP(pool, n, lbClaims([]*corev1.Service{n, lbSvc("x", nil, "", nil)},
		map[Key]string{{Namespace: "default", Name: "x"}: "172.31.255.1"})); got != "172.31.255.2" {
		t.Fatalf("in-flight assignment ignored: got %s", got)
	}
}

// TestProgramRoutes programs the router's routes in a scratch namespace: adds, changes (ECMP to
// one hop and back), removes, and leaves routes of other protocols alone.
func TestProgramRoutes(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	name := "pnrt-" + rand.String(6)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "delete", name).Run() })
	err := withHandle(name, func(h *netlink.Handle) error {
		if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0"}, PeerName: "peer0"}); err != nil {
			return err
		}
		for _, n := range []string{"eth0", "peer0", "lo"} {
			l, err := h.LinkByName(n)
			if err != nil {
				return err
			}
			if err := h.LinkSetUp(l); err != nil {
				return err
			}
		}
		eth, _ := h.LinkByName("eth0")
		if err := h.AddrAdd(eth, &netlink.Addr{IPNet: &net.IPNet{IP: net.ParseIP("172.30.0.254"), Mask: net.CIDRMask(24, 32)}}); err != nil {
			return err
		}
		// Someone else's route to an address the router will also want.
		return h.RouteAdd(&netlink.Route{Dst: &net.IPNet{IP: net.ParseIP("192.0.2.99").To4(), Mask: net.CIDRMask(32, 32)},
			LinkIndex: eth.Attrs().Index, Gw: net.ParseIP("172.30.0.11"), Protocol: 4, Priority: 50})
	})
	if err != nil {
		t.Fatal(err)
	}
	step := func(want map[string][]string, a, c, r int) {
		t.Helper()
		err := withHandle(name, func(h *netlink.Handle) error {
			ga, gc, gr, err := programRoutes(h, want)
			if err != nil {
				return err
			}
			if ga != a || gc != c || gr != r {
				return fmt.Errorf("added/changed/removed %d/%d/%d, want %d/%d/%d", ga, gc, gr, a, c, r)
			}
			have, err := h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: RouterRouteProtocol}, netlink.RT_FILTER_PROTOCOL)
			if err != nil {
				return err
			}
			got := map[string][]string{}
			for _, rt := range have {
				got[rt.Dst.IP.String()] = routeHops(rt)
			}
			if !reflect.DeepEqual(got, want) {
				return fmt.Errorf("routes %v, want %v", got, want)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	two := []string{"172.30.0.11", "172.30.0.12"}
	step(map[string][]string{"172.31.255.1": two, "172.31.255.2": {"172.30.0.12"}}, 2, 0, 0)
	step(map[string][]string{"172.31.255.1": two, "172.31.255.2": {"172.30.0.12"}}, 0, 0, 0) // adopt: no writes
	step(map[string][]string{"172.31.255.1": {"172.30.0.11"}, "172.31.255.2": two}, 0, 2, 0)
	step(map[string][]string{"172.31.255.2": two, "192.0.2.99": {"172.30.0.12"}}, 1, 0, 1)
	step(map[string][]string{}, 0, 0, 2)
	// The foreign route is still there.
	_ = withHandle(name, func(h *netlink.Handle) error {
		rs, _ := h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: 4}, netlink.RT_FILTER_PROTOCOL)
		if len(rs) != 1 {
			t.Errorf("foreign routes: %v", rs)
		}
		return nil
	})
}

// TestKillInNetns: a process living in a lab namespace is killed; a process of the host that
// has one thread in it for a moment (this test) is not.
func TestKillInNetns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	name := "pnkill-" + rand.String(6)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "delete", name).Run() })
	var st syscall.Stat_t
	if err := syscall.Stat(NetnsPath(name), &st); err != nil {
		t.Fatal(err)
	}
	lab := map[uint64]bool{st.Ino: true}
	inside := exec.Command("ip", "netns", "exec", name, "sleep", "60")
	if err := inside.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- inside.Wait() }()
	// One thread of this process enters the namespace and stays until the end.
	entered, release := make(chan error), make(chan struct{})
	go func() {
		runtime.LockOSThread() // never unlocked: the runtime discards the thread
		h, err := netns.GetFromName(name)
		if err == nil {
			err = netns.Set(h)
		}
		entered <- err
		<-release
	}()
	if err := <-entered; err != nil {
		t.Fatal(err)
	}
	defer close(release)
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", os.Getpid()))
	in := 0
	for _, task := range tasks {
		var ts syscall.Stat_t
		if syscall.Stat(fmt.Sprintf("/proc/%d/task/%s/ns/net", os.Getpid(), task.Name()), &ts) == nil && lab[ts.Ino] {
			in++
		}
	}
	if in == 0 || allThreadsIn(os.Getpid(), lab) {
		t.Fatalf("%d threads of the test in the namespace; all of them: %v", in, allThreadsIn(os.Getpid(), lab))
	}
	deadline := time.Now().Add(2 * time.Second)
	for !allThreadsIn(inside.Process.Pid, lab) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // ip netns exec has not switched yet
	}
	killInNetns([]string{name})
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		t.Fatal("the process in the namespace is still running")
	}
}
