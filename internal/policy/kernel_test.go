package policy

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/podnet/podnet/internal/netnsutil"
	"github.com/podnet/podnet/internal/nstest"
)

func run(t *testing.T, cmd string) {
	t.Helper()
	if out, err := exec.Command("sh", "-c", cmd).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", cmd, err, out)
	}
}

// TestKernelEnforces programs a rendered policy table into a node namespace with three pods on
// a bridge and sends real TCP: an isolated pod takes only what its policy allows, replies pass,
// and a policy change (elements only) takes effect.
func TestKernelEnforces(t *testing.T) {
	node, _ := nstest.New(t, "pol")
	run(t, fmt.Sprintf(`ip -n %[1]s link add br0 type bridge && ip -n %[1]s addr add 10.244.1.1/24 dev br0 && ip -n %[1]s link set br0 up &&
		ip netns exec %[1]s sysctl -qw net.ipv4.ip_forward=1`, node))
	ips := map[string]string{"a": "10.244.1.2", "b": "10.244.1.3", "c": "10.244.1.4"}
	podNS := map[string]string{}
	var pods []*corev1.Pod
	for i, name := range []string{"a", "b", "c"} {
		ns, path := nstest.New(t, "pod"+name)
		podNS[name] = path
		run(t, fmt.Sprintf(`ip -n %[1]s link add v%[3]d type veth peer name eth0 netns %[2]s && ip -n %[1]s link set v%[3]d master br0 up &&
			ip -n %[2]s addr add %[4]s/24 dev eth0 && ip -n %[2]s link set eth0 up && ip -n %[2]s route add default via 10.244.1.1`, node, ns, i, ips[name]))
		l, err := netnsutil.Listen(path, "tcp", ips[name]+":80")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				c.Write([]byte("hi"))
				c.Close()
			}
		}()
		pods = append(pods, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: name, Labels: map[string]string{"pod": name}},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ips[name]}})
	}
	nss := []*corev1.Namespace{{ObjectMeta: metav1.ObjectMeta{Name: "x"}}}
	tcp := corev1.ProtocolTCP
	policy := func(from ...string) *networkingv1.NetworkPolicy {
		var peers []networkingv1.NetworkPolicyPeer
		for _, f := range from {
			peers = append(peers, networkingv1.NetworkPolicyPeer{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"pod": f}}})
		}
		return &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "b-in"},
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"pod": "b"}},
				Ingress:     []networkingv1.NetworkPolicyIngressRule{{From: peers, Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp}}}},
			}}
	}
	// c is not known to the table at first: its IP is in the node's pod CIDR, but the table was
	// not rendered for it yet (fail closed).
	local := []netip.Addr{netip.MustParseAddr(ips["a"]), netip.MustParseAddr(ips["b"])}
	h, err := netns.GetFromName(node)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	k, err := NewKernel(int(h))
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	cidrs := []netip.Prefix{netip.MustParsePrefix("10.244.1.0/24")}
	apply := func(p *networkingv1.NetworkPolicy) int {
		t.Helper()
		n, err := k.Apply(Render(Compile([]*networkingv1.NetworkPolicy{p}, pods, nss), NodeInfo{LocalPodIPs: local, PodCIDRs: cidrs}))
		if err != nil {
			t.Fatalf("apply: %v", err)
		}
		return n
	}
	reach := func(from, to string) bool {
		ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
		defer cancel()
		c, err := netnsutil.DialContext(ctx, podNS[from], "tcp", ips[to]+":80")
		if err != nil {
			return false
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(time.Second))
		b := make([]byte, 2)
		n, _ := c.Read(b)
		return n == 2
	}
	check := func(want map[string]bool) {
		t.Helper()
		for pair, w := range want {
			f, to, _ := strings.Cut(pair, ">")
			if got := reach(f, to); got != w {
				t.Errorf("%s -> %s: reachable %v, want %v", f, to, got, w)
			}
		}
	}
	apply(policy("a"))
	check(map[string]bool{"a>b": true, "a>c": false, "b>c": false, "c>a": false, "c>b": false})
	local = append(local, netip.MustParseAddr(ips["c"]))
	if n := apply(policy("a")); n != 1 {
		t.Fatalf("knowing c changed %d elements, want 1", n)
	}
	check(map[string]bool{"a>b": true, "c>b": false, "b>c": true, "c>a": true, "a>c": true})
	if n := apply(policy("a", "c")); n == 0 {
		t.Fatal("allowing c changed no element")
	}
	check(map[string]bool{"c>b": true, "a>b": true})

	// A restarted agent adopts the table: the same rendering writes nothing, a change only its
	// elements; a table that is not exactly ours is rebuilt.
	k2, err := NewKernel(int(h))
	if err != nil {
		t.Fatal(err)
	}
	defer k2.Close()
	rs := Render(Compile([]*networkingv1.NetworkPolicy{policy("a", "c")}, pods, nss), NodeInfo{LocalPodIPs: local, PodCIDRs: cidrs})
	if n, err := k2.Apply(rs); err != nil || n != 0 {
		t.Fatalf("adopting apply: %d elements changed, %v; want 0", n, err)
	}
	rs = Render(Compile([]*networkingv1.NetworkPolicy{policy("a")}, pods, nss), NodeInfo{LocalPodIPs: local, PodCIDRs: cidrs})
	if n, err := k2.Apply(rs); err != nil || n == 0 || n > 4 {
		t.Fatalf("apply after adopting: %d elements changed, %v; want a few", n, err)
	}
	check(map[string]bool{"c>b": false, "a>b": true})
	run(t, fmt.Sprintf("ip netns exec %s nft add rule ip %s pending accept", node, TableName))
	k3, err := NewKernel(int(h))
	if err != nil {
		t.Fatal(err)
	}
	defer k3.Close()
	if n, err := k3.Apply(rs); err != nil || n == 0 {
		t.Fatalf("a foreign rule was adopted: %d elements written, %v", n, err)
	}
	out, _ := exec.Command("ip", "netns", "exec", node, "nft", "list", "chain", "ip", TableName, ChainPending).CombinedOutput()
	if strings.Contains(string(out), "accept") {
		t.Errorf("the foreign rule survived the rebuild:\n%s", out)
	}
}

// TestKernelLargeTable programs a table far larger than one netlink message (thousands of
// interval elements), in one transaction, and changes it by elements.
func TestKernelLargeTable(t *testing.T) {
	node, _ := nstest.New(t, "polbig")
	h, err := netns.GetFromName(node)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	var pods []*corev1.Pod
	var local []netip.Addr
	for i := 0; i < 2000; i++ {
		ip := netip.AddrFrom4([4]byte{10, 250, byte(i / 250), byte(i%250 + 2)})
		local = append(local, ip)
		pods = append(pods, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: fmt.Sprint("p", i), Labels: map[string]string{"app": fmt.Sprint(i % 7)}},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip.String()}})
	}
	nss := []*corev1.Namespace{{ObjectMeta: metav1.ObjectMeta{Name: "x"}}}
	tcp := corev1.ProtocolTCP
	pol := func(name string, cidrs ...string) *networkingv1.NetworkPolicy {
		var peers []networkingv1.NetworkPolicyPeer
		for _, c := range cidrs {
			peers = append(peers, networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: c}})
		}
		port := intstr.FromInt32(443)
		return &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: name},
			Spec: networkingv1.NetworkPolicySpec{Ingress: []networkingv1.NetworkPolicyIngressRule{{From: peers,
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &port}}}}}}
	}
	k, err := NewKernel(int(h))
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	cidrs := []netip.Prefix{netip.MustParsePrefix("10.250.0.0/16")}
	pols := []*networkingv1.NetworkPolicy{pol("a", "192.168.1.0/24", "192.168.3.0/24", "172.16.0.0/12")}
	rs := Render(Compile(pols, pods, nss), NodeInfo{LocalPodIPs: local, PodCIDRs: cidrs})
	want := len(rs.Set(SetIngressAllow).Elements)
	if want < 5000 {
		t.Fatalf("only %d elements: not a large table", want)
	}
	t0 := time.Now()
	if _, err := k.Apply(rs); err != nil {
		t.Fatalf("apply %d elements: %v", want, err)
	}
	t.Logf("first apply of %d elements: %v", want, time.Since(t0))
	count := func() int {
		out, err := exec.Command("ip", "netns", "exec", node, "nft", "-j", "list", "set", "ip", TableName, SetIngressAllow).Output()
		if err != nil {
			t.Fatal(err)
		}
		return strings.Count(string(out), `"concat"`) // one per element
	}
	if got := count(); got != want {
		t.Fatalf("kernel holds %d ingress-allow elements, want %d", got, want)
	}
	pols = append(pols, pol("b", "192.168.2.0/24"))
	rs = Render(Compile(pols, pods, nss), NodeInfo{LocalPodIPs: local, PodCIDRs: cidrs})
	t0 = time.Now()
	n, err := k.Apply(rs)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("change of %d elements: %v", n, time.Since(t0))
	if got, want := count(), len(rs.Set(SetIngressAllow).Elements); got != want || n == 0 {
		t.Fatalf("after a change of %d elements the kernel holds %d, want %d", n, got, want)
	}
}
