package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/client-go/tools/cache"

	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"

	"github.com/podnet/podnet/internal/netnsutil"
)

// testNode is a node namespace with a bridge and pods attached to it, like a podnet node.
type testNode struct {
	t    *testing.T
	node string
	pods map[string]string // pod IP -> netns name
}

func newTestNode(t *testing.T, podIPs ...string) *testNode {
	name, _ := testNetns(t, "node")
	n := &testNode{t: t, node: name, pods: map[string]string{}}
	sh(t, fmt.Sprintf(`ip -n %[1]s link set lo up && ip -n %[1]s link add br0 type bridge && ip -n %[1]s addr add 10.244.1.1/24 dev br0 &&
		ip -n %[1]s link set br0 up && ip -n %[1]s route add 10.96.0.0/16 dev br0 && ip netns exec %[1]s sysctl -qw net.ipv4.ip_forward=1`, name))
	for i, ip := range podIPs {
		pod, _ := testNetns(t, "pod")
		n.pods[ip] = pod
		host := fmt.Sprintf("v%d", i)
		sh(t, fmt.Sprintf(`ip -n %[1]s link add %[3]s type veth peer name eth0 netns %[2]s && ip -n %[1]s link set %[3]s master br0 up &&
			ip -n %[1]s link set %[3]s type bridge_slave hairpin on &&
			ip -n %[2]s link set lo up && ip -n %[2]s addr add %[4]s/24 dev eth0 && ip -n %[2]s link set eth0 up &&
			ip -n %[2]s route add default via 10.244.1.1`, name, pod, host, ip))
	}
	return n
}

// serveTCP answers each connection with the client address it saw, from inside a pod.
func (n *testNode) serveTCP(podIP string, port int) {
	l, err := netnsutil.Listen("/run/netns/"+n.pods[podIP], "tcp", fmt.Sprintf("%s:%d", podIP, port))
	if err != nil {
		n.t.Fatal(err)
	}
	n.t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "%s %s\n", podIP, c.RemoteAddr())
			c.Close()
		}
	}()
}

func (n *testNode) serveUDP(podIP string, port int) func() {
	pc, err := netnsutil.ListenPacket("/run/netns/"+n.pods[podIP], "udp", fmt.Sprintf("%s:%d", podIP, port))
	if err != nil {
		n.t.Fatal(err)
	}
	go func() {
		b := make([]byte, 100)
		for {
			_, from, err := pc.ReadFrom(b)
			if err != nil {
				return
			}
			pc.WriteTo([]byte(podIP), from)
		}
	}()
	n.t.Cleanup(func() { pc.Close() })
	return func() { pc.Close() }
}

// ask connects from a pod to addr and returns what the server said.
func (n *testNode) ask(fromPod, addr string) (string, error) {
	c, err := netnsutil.Dial("/run/netns/"+n.pods[fromPod], "tcp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	b := make([]byte, 200)
	k, err := c.Read(b)
	return strings.TrimSpace(string(b[:k])), err
}

type fakeCluster struct {
	svcs, slices cache.Indexer
}

func newFakeCluster() *fakeCluster {
	return &fakeCluster{cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{}), cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})}
}

func (f *fakeCluster) set(svcs []*corev1.Service, slices []*discoveryv1.EndpointSlice) {
	f.svcs.Replace(nil, "")
	f.slices.Replace(nil, "")
	for _, s := range svcs {
		f.svcs.Add(s)
	}
	for _, s := range slices {
		f.slices.Add(s)
	}
}

// TestDataplane sends real TCP and UDP through the proxy's table in a node namespace.
func TestDataplane(t *testing.T) {
	needRoot(t)
	n := newTestNode(t, "10.244.1.2", "10.244.1.3", "10.244.1.4")
	nsh, err := netns.GetFromName(n.node)
	if err != nil {
		t.Fatal(err)
	}
	defer nsh.Close()
	k, err := NewKernel(int(nsh))
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	nl, err := netlink.NewHandleAt(nsh)
	if err != nil {
		t.Fatal(err)
	}
	defer nl.Close()
	fc := newFakeCluster()
	p := New(Config{Node: "n1", ClusterCIDR: clusterCIDR, Kernel: k, Conntrack: NetlinkConntrack{nl},
		Services: corelisters.NewServiceLister(fc.svcs), Slices: discoverylisters.NewEndpointSliceLister(fc.slices)})
	sync := func(svcs []*corev1.Service, slices ...*discoveryv1.EndpointSlice) SyncResult {
		t.Helper()
		fc.set(svcs, slices)
		res, err := p.Sync(context.Background())
		if err != nil {
			t.Fatalf("sync: %v", err)
		}
		return res
	}
	for _, ip := range []string{"10.244.1.2", "10.244.1.3", "10.244.1.4"} {
		n.serveTCP(ip, 8080)
	}
	stopUDP3 := n.serveUDP("10.244.1.3", 5353)
	n.serveUDP("10.244.1.4", 5353)
	svcs := []*corev1.Service{
		svc("d", "web", "10.96.0.20", []corev1.ServicePort{tcp("http", 80)}),
		svc("d", "dns", "10.96.0.21", []corev1.ServicePort{udp("dns", 53)}),
		svc("d", "empty", "10.96.0.23", []corev1.ServicePort{tcp("", 80), udp("u", 53)}),
	}
	web := slice("d", "web", "http", corev1.ProtocolTCP, 8080, ep{ip: "10.244.1.3", node: "n1"})
	dns := slice("d", "dns", "dns", corev1.ProtocolUDP, 5353, ep{ip: "10.244.1.3", node: "n1"})
	sync(svcs, web, dns)

	// ClusterIP: the backend sees the client pod's own address.
	got, err := n.ask("10.244.1.2", "10.96.0.20:80")
	if err != nil || !strings.HasPrefix(got, "10.244.1.3 10.244.1.2:") {
		t.Fatalf("pod -> ClusterIP: %q %v", got, err)
	}
	// Hairpin: the endpoint reaches itself through its Service (masqueraded to the bridge address).
	got, err = n.ask("10.244.1.3", "10.96.0.20:80")
	if err != nil || !strings.HasPrefix(got, "10.244.1.3 10.244.1.1:") {
		t.Fatalf("hairpin: %q %v", got, err)
	}
	// No endpoints, and an unknown port of a ClusterIP: refused at once, not a timeout.
	for _, addr := range []string{"10.96.0.23:80", "10.96.0.20:81"} {
		start := time.Now()
		_, err = n.ask("10.244.1.2", addr)
		if err == nil || !strings.Contains(err.Error(), "refused") || time.Since(start) > time.Second {
			t.Fatalf("%s: want connection refused at once, got %v after %v", addr, err, time.Since(start))
		}
	}

	// UDP: a client keeps one socket; when its endpoint goes away the stale conntrack entry is
	// deleted and the very next datagram reaches the new endpoint.
	conn, err := netnsutil.Dial("/run/netns/"+n.pods["10.244.1.2"], "udp", "10.96.0.21:53")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	askUDP := func() string {
		conn.SetDeadline(time.Now().Add(500 * time.Millisecond))
		conn.Write([]byte("hi"))
		b := make([]byte, 100)
		k, err := conn.Read(b)
		if err != nil {
			return err.Error()
		}
		return string(b[:k])
	}
	if got := askUDP(); got != "10.244.1.3" {
		t.Fatalf("udp before: %q", got)
	}
	stopUDP3()
	res := sync(svcs, web, slice("d", "dns", "dns", corev1.ProtocolUDP, 5353, ep{ip: "10.244.1.4", node: "n1"}))
	if res.FlowsDeleted == 0 {
		t.Errorf("no conntrack entry deleted: %+v", res)
	}
	if got := askUDP(); got != "10.244.1.4" {
		t.Fatalf("udp after the endpoint moved: %q (stale conntrack entry?)", got)
	}

	// Spread: three endpoints, each reached.
	web3 := slice("d", "web", "http", corev1.ProtocolTCP, 8080, ep{ip: "10.244.1.2", node: "n1"}, ep{ip: "10.244.1.3", node: "n1"}, ep{ip: "10.244.1.4", node: "n1"})
	sync(svcs, web3, dns)
	seen := map[string]int{}
	for i := 0; i < 60; i++ {
		got, err := n.ask("10.244.1.2", "10.96.0.20:80")
		if err != nil {
			t.Fatal(err)
		}
		seen[strings.Fields(got)[0]]++
	}
	if len(seen) != 3 {
		t.Fatalf("spread over endpoints: %v", seen)
	}
	b, _ := json.Marshal(seen)
	t.Logf("60 connections: %s", b)
}
