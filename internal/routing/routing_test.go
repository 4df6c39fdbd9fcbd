package routing

import (
	"net"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"github.com/vishvananda/netlink"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func cidr(s string) *net.IPNet {
	_, n, err := net.ParseCIDR(s)
	if err != nil {
		panic(err)
	}
	return n
}

func mac(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

func node(name, podCIDR, ip, vtep string) Node {
	n := Node{Name: name, InternalIP: net.ParseIP(ip)}
	if podCIDR != "" {
		n.PodCIDR = cidr(podCIDR)
	}
	if vtep != "" {
		n.VTEPMAC = mac(vtep)
	}
	return n
}

func TestRouteProtocolIsPodnets(t *testing.T) {
	if RouteProtocol != 98 {
		t.Fatalf("RouteProtocol = %d, want 98", RouteProtocol)
	}
}

func TestNew(t *testing.T) {
	h := &netlink.Handle{} // never used: New does not touch the kernel
	local := node("n1", "10.244.1.0/24", "192.168.1.1", "")
	tests := []struct {
		name    string
		kind    string
		cfg     Config
		wantErr []string // substrings; nil = success
	}{
		{"host-gw", KindHostGW, Config{Handle: h, Local: local}, nil},
		{"vxlan", KindVXLAN, Config{Handle: h, Local: local}, nil},
		{"unknown kind lists valid ones", "calico", Config{Handle: h, Local: local}, []string{`"calico"`, "host-gw", "vxlan"}},
		{"ipip not available", KindIPIP, Config{Handle: h, Local: local}, []string{`"ipip"`, "ipip tunnel device"}},
		{"no handle", KindHostGW, Config{Local: local}, []string{"Handle"}},
		{"no local name", KindHostGW, Config{Handle: h, Local: node("", "10.244.1.0/24", "192.168.1.1", "")}, []string{"Local", "Name"}},
		{"no pod CIDR", KindHostGW, Config{Handle: h, Local: node("n1", "", "192.168.1.1", "")}, []string{"Local", "PodCIDR"}},
		{"IPv6 pod CIDR", KindHostGW, Config{Handle: h, Local: node("n1", "fd00::/64", "192.168.1.1", "")}, []string{"PodCIDR", "IPv4"}},
		{"no InternalIP", KindVXLAN, Config{Handle: h, Local: Node{Name: "n1", PodCIDR: cidr("10.244.1.0/24")}}, []string{"InternalIP"}},
		{"IPv6 InternalIP", KindVXLAN, Config{Handle: h, Local: node("n1", "10.244.1.0/24", "fd00::1", "")}, []string{"InternalIP", "IPv4"}},
		{"VNI too big", KindVXLAN, Config{Handle: h, Local: local, VNI: 1 << 24}, []string{"VNI"}},
		{"negative port", KindVXLAN, Config{Handle: h, Local: local, Port: -1}, []string{"Port"}},
		{"multicast local MAC", KindVXLAN, Config{Handle: h, Local: node("n1", "10.244.1.0/24", "192.168.1.1", "01:00:5e:00:00:01")}, []string{"VTEPMAC", "multicast"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := New(tc.kind, tc.cfg)
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				if b.Name() != tc.kind {
					t.Fatalf("Name() = %q, want %q", b.Name(), tc.kind)
				}
				return
			}
			if err == nil {
				t.Fatalf("New succeeded, want error containing %q", tc.wantErr)
			}
			for _, s := range tc.wantErr {
				if !strings.Contains(err.Error(), s) {
					t.Fatalf("error %q does not mention %q", err, s)
				}
			}
		})
	}

	b, err := New(KindVXLAN, Config{Handle: h, Local: local})
	if err != nil {
		t.Fatal(err)
	}
	if vx := b.(*vxlan); vx.cfg.VNI != DefaultVNI || vx.cfg.Port != DefaultPort {
		t.Fatalf("defaults: VNI %d Port %d", vx.cfg.VNI, vx.cfg.Port)
	}
}

func k8sNode(name string, mut func(*corev1.Node)) *corev1.Node {
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       corev1.NodeSpec{PodCIDR: "10.244.2.0/24", PodCIDRs: []string{"10.244.2.0/24"}},
		Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeHostName, Address: name},
			{Type: corev1.NodeInternalIP, Address: "192.168.77.2"},
		}},
	}
	if mut != nil {
		mut(n)
	}
	return n
}

func TestParseNode(t *testing.T) {
	tests := []struct {
		name    string
		in      *corev1.Node
		want    Node
		wantErr []string
	}{
		{
			name: "no annotation yet",
			in:   k8sNode("n2", nil),
			want: node("n2", "10.244.2.0/24", "192.168.77.2", ""),
		},
		{
			name: "with VTEP MAC",
			in:   k8sNode("n2", func(n *corev1.Node) { n.Annotations = map[string]string{AnnotationVTEPMAC: "02:42:ac:11:00:02"} }),
			want: node("n2", "10.244.2.0/24", "192.168.77.2", "02:42:ac:11:00:02"),
		},
		{
			name: "dual-stack, IPv6 first",
			in: k8sNode("n2", func(n *corev1.Node) {
				n.Spec.PodCIDR = "fd00:10:244:2::/64"
				n.Spec.PodCIDRs = []string{"fd00:10:244:2::/64", "10.244.2.0/24"}
				n.Status.Addresses = []corev1.NodeAddress{
					{Type: corev1.NodeInternalIP, Address: "fd00::2"},
					{Type: corev1.NodeExternalIP, Address: "203.0.113.9"},
					{Type: corev1.NodeInternalIP, Address: "192.168.77.2"},
				}
			}),
			want: node("n2", "10.244.2.0/24", "192.168.77.2", ""),
		},
		{
			name: "only podCIDRs set, host bits normalised",
			in:   k8sNode("n2", func(n *corev1.Node) { n.Spec.PodCIDR = ""; n.Spec.PodCIDRs = []string{"10.244.2.7/24"} }),
			want: node("n2", "10.244.2.0/24", "192.168.77.2", ""),
		},
		{name: "nil", in: nil, wantErr: []string{"nil"}},
		{name: "no name", in: k8sNode("", nil), wantErr: []string{"metadata.name"}},
		{
			name:    "no pod CIDR",
			in:      k8sNode("n2", func(n *corev1.Node) { n.Spec.PodCIDR = ""; n.Spec.PodCIDRs = nil }),
			wantErr: []string{`"n2"`, "spec.podCIDR", "empty"},
		},
		{
			name:    "bad pod CIDR",
			in:      k8sNode("n2", func(n *corev1.Node) { n.Spec.PodCIDR = "10.244.2.0/33" }),
			wantErr: []string{`"n2"`, "spec.podCIDR", "10.244.2.0/33"},
		},
		{
			name:    "bad podCIDRs entry",
			in:      k8sNode("n2", func(n *corev1.Node) { n.Spec.PodCIDRs = []string{"10.244.2.0/24", "nope"} }),
			wantErr: []string{"spec.podCIDRs[1]", "nope"},
		},
		{
			name:    "IPv6-only pod CIDR",
			in:      k8sNode("n2", func(n *corev1.Node) { n.Spec.PodCIDR = "fd00::/64"; n.Spec.PodCIDRs = nil }),
			wantErr: []string{"spec.podCIDR", "IPv4"},
		},
		{
			name: "no InternalIP",
			in: k8sNode("n2", func(n *corev1.Node) {
				n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeExternalIP, Address: "203.0.113.9"}}
			}),
			wantErr: []string{`"n2"`, "status.addresses", "InternalIP"},
		},
		{
			name: "bad InternalIP",
			in: k8sNode("n2", func(n *corev1.Node) {
				n.Status.Addresses[1].Address = "192.168.77.300"
			}),
			wantErr: []string{"status.addresses[1]", "192.168.77.300"},
		},
		{
			name:    "bad MAC annotation",
			in:      k8sNode("n2", func(n *corev1.Node) { n.Annotations = map[string]string{AnnotationVTEPMAC: "zz:zz"} }),
			wantErr: []string{`"n2"`, AnnotationVTEPMAC, "zz:zz"},
		},
		{
			name:    "multicast MAC annotation",
			in:      k8sNode("n2", func(n *corev1.Node) { n.Annotations = map[string]string{AnnotationVTEPMAC: "33:33:00:00:00:01"} }),
			wantErr: []string{AnnotationVTEPMAC, "multicast"},
		},
		{
			name:    "long MAC annotation",
			in:      k8sNode("n2", func(n *corev1.Node) { n.Annotations = map[string]string{AnnotationVTEPMAC: "02:00:00:00:00:00:00:01"} }),
			wantErr: []string{AnnotationVTEPMAC, "6-byte"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseNode(tc.in)
			if tc.wantErr != nil {
				if err == nil {
					t.Fatalf("ParseNode = %+v, want error", got)
				}
				for _, s := range tc.wantErr {
					if !strings.Contains(err.Error(), s) {
						t.Fatalf("error %q does not mention %q", err, s)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Name != tc.want.Name || got.PodCIDR.String() != tc.want.PodCIDR.String() ||
				!got.InternalIP.Equal(tc.want.InternalIP) || got.VTEPMAC.String() != tc.want.VTEPMAC.String() {
				t.Fatalf("ParseNode = %+v, want %+v", got, tc.want)
			}
			if len(got.InternalIP) != 4 || len(got.PodCIDR.IP) != 4 {
				t.Fatalf("addresses not in 4-byte form: %#v %#v", got.InternalIP, got.PodCIDR.IP)
			}
		})
	}
}

func specStrings[T interface{ String() string }](xs []T) []string {
	var out []string
	for _, x := range xs {
		out = append(out, x.String())
	}
	return out
}

var underlay24 = []*net.IPNet{cidr("192.168.77.0/24")}

func TestDesiredHostGW(t *testing.T) {
	local := node("n1", "10.244.1.0/24", "192.168.77.1", "")
	remotes := []Node{
		node("n3", "10.244.3.0/24", "192.168.77.3", ""),
		local, // the agent passes every node; the local one is skipped
		node("n2", "10.244.2.0/24", "192.168.77.2", "02:00:00:00:00:02"),
	}
	d, err := DesiredHostGW(local, "eth0", underlay24, remotes)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"10.244.2.0/24 via 192.168.77.2 dev eth0 proto 98",
		"10.244.3.0/24 via 192.168.77.3 dev eth0 proto 98",
	}
	if got := specStrings(d.Routes); !reflect.DeepEqual(got, want) {
		t.Fatalf("routes %q, want %q", got, want)
	}
	if d.Routes[0].Node != "n2" || len(d.Neighbors)+len(d.FDB)+len(d.Unroutable)+len(d.Pending) != 0 {
		t.Fatalf("unexpected state %+v", d)
	}

	// No remotes → nothing wanted.
	if d, err := DesiredHostGW(local, "eth0", underlay24, nil); err != nil || len(d.Routes) != 0 {
		t.Fatalf("no remotes: %+v, %v", d, err)
	}

	// A node on another subnet is unroutable; the others are still wanted.
	d, err = DesiredHostGW(local, "eth0", underlay24, append(remotes, node("far", "10.244.9.0/24", "10.0.0.9", "")))
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Routes) != 2 || len(d.Unroutable) != 1 || d.Unroutable[0].Node != "far" ||
		!strings.Contains(d.Unroutable[0].Reason, "10.0.0.9") || !strings.Contains(d.Unroutable[0].Reason, "192.168.77.0/24") {
		t.Fatalf("off-subnet node: %+v", d)
	}
	err = unroutableError(KindHostGW, d.Unroutable)
	if err == nil || !strings.Contains(err.Error(), `"far"`) {
		t.Fatalf("unroutable error %v", err)
	}
}

func TestDesiredInputErrors(t *testing.T) {
	local := node("n1", "10.244.1.0/24", "192.168.77.1", "")
	good := node("n2", "10.244.2.0/24", "192.168.77.2", "02:00:00:00:00:02")
	tests := []struct {
		name    string
		local   Node
		remotes []Node
		wantErr []string
	}{
		{"remote without name", local, []Node{{PodCIDR: cidr("10.244.2.0/24"), InternalIP: net.ParseIP("192.168.77.2")}}, []string{"remotes[0]", "Name"}},
		{"remote without pod CIDR", local, []Node{node("n2", "", "192.168.77.2", "")}, []string{`"n2"`, "PodCIDR"}},
		{"remote without InternalIP", local, []Node{{Name: "n2", PodCIDR: cidr("10.244.2.0/24")}}, []string{`"n2"`, "InternalIP"}},
		{"remote IPv6 InternalIP", local, []Node{node("n2", "10.244.2.0/24", "fd00::2", "")}, []string{`"n2"`, "InternalIP", "IPv4"}},
		{"duplicate remote", local, []Node{good, good}, []string{`"n2"`, "twice"}},
		{"overlaps local", local, []Node{node("n2", "10.244.0.0/16", "192.168.77.2", "")}, []string{`"n2"`, "overlaps", `"n1"`}},
		{"overlapping remotes", local, []Node{good, node("n3", "10.244.2.128/25", "192.168.77.3", "")}, []string{`"n3"`, "overlaps", `"n2"`}},
		{"same InternalIP", local, []Node{good, node("n3", "10.244.3.0/24", "192.168.77.2", "")}, []string{`"n3"`, "InternalIP", `"n2"`}},
		{"bad remote MAC", local, []Node{node("n2", "10.244.2.0/24", "192.168.77.2", "01:00:00:00:00:02")}, []string{`"n2"`, "VTEPMAC"}},
		{"local without pod CIDR", node("n1", "", "192.168.77.1", ""), []Node{good}, []string{"local", "PodCIDR"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, f := range []func() (DesiredState, error){
				func() (DesiredState, error) { return DesiredHostGW(tc.local, "eth0", underlay24, tc.remotes) },
				func() (DesiredState, error) { return DesiredVXLAN(tc.local, VXLANDevice, tc.remotes) },
			} {
				d, err := f()
				if err == nil {
					t.Fatalf("got %+v, want error", d)
				}
				for _, s := range tc.wantErr {
					if !strings.Contains(err.Error(), s) {
						t.Fatalf("error %q does not mention %q", err, s)
					}
				}
			}
		})
	}
}

func TestDesiredVXLAN(t *testing.T) {
	local := node("n1", "10.244.1.0/24", "192.168.77.1", "02:00:00:00:00:01")
	remotes := []Node{
		node("n3", "10.244.3.0/24", "10.0.0.3", "02:00:00:00:00:03"), // vxlan is routed, any subnet is fine
		node("n2", "10.244.2.0/24", "192.168.77.2", "02:00:00:00:00:02"),
		node("n4", "10.244.4.0/24", "192.168.77.4", ""), // MAC not published yet
		local,
	}
	d, err := DesiredVXLAN(local, VXLANDevice, remotes)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]string{
		"routes": specStrings(d.Routes), "neigh": specStrings(d.Neighbors), "fdb": specStrings(d.FDB), "pending": d.Pending,
	}
	want := map[string][]string{
		"routes": {
			"10.244.2.0/24 via 10.244.2.0 dev pn-vxlan onlink proto 98",
			"10.244.3.0/24 via 10.244.3.0 dev pn-vxlan onlink proto 98",
		},
		"neigh": {
			"10.244.2.0 lladdr 02:00:00:00:00:02 dev pn-vxlan nud permanent",
			"10.244.3.0 lladdr 02:00:00:00:00:03 dev pn-vxlan nud permanent",
		},
		"fdb": {
			"02:00:00:00:00:02 dev pn-vxlan dst 192.168.77.2 self permanent",
			"02:00:00:00:00:03 dev pn-vxlan dst 10.0.0.3 self permanent",
		},
		"pending": {"n4"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("desired\n%q\nwant\n%q", got, want)
	}
	if len(d.Unroutable) != 0 {
		t.Fatalf("unroutable %+v", d.Unroutable)
	}

	_, err = DesiredVXLAN(local, VXLANDevice, []Node{
		node("n2", "10.244.2.0/24", "192.168.77.2", "02:00:00:00:00:02"),
		node("n3", "10.244.3.0/24", "192.168.77.3", "02:00:00:00:00:02"),
	})
	if err == nil || !strings.Contains(err.Error(), `"n3"`) || !strings.Contains(err.Error(), "VTEPMAC") {
		t.Fatalf("duplicate MAC: %v", err)
	}
}

func TestPlanRoutes(t *testing.T) {
	spec := func(dst, gw string, dev int, onlink bool) netlink.Route {
		return wantRoute(RouteSpec{Dst: cidr(dst), Gw: net.ParseIP(gw), OnLink: onlink}, dev)
	}
	// What the kernel reports for a route podnet installed.
	kernel := func(r netlink.Route) netlink.Route {
		r.Gw = r.Gw.To16()
		return r
	}
	a := spec("10.244.2.0/24", "192.168.77.2", 2, false)
	b := spec("10.244.3.0/24", "192.168.77.3", 2, false)
	c := spec("10.244.4.0/24", "192.168.77.4", 2, false)
	bMoved := spec("10.244.3.0/24", "192.168.77.33", 2, false)
	bVXLAN := spec("10.244.3.0/24", "10.244.3.0", 5, true)
	bMetric := kernel(b)
	bMetric.Priority = 100

	str := func(rs []netlink.Route) []string {
		out := []string{}
		for _, r := range rs {
			out = append(out, r.Dst.String()+" via "+r.Gw.String())
		}
		return out
	}
	tests := []struct {
		name             string
		existing, want   []netlink.Route
		add, update, del []string
	}{
		{"converged", []netlink.Route{kernel(a), kernel(b)}, []netlink.Route{b, a}, nil, nil, nil},
		{"empty kernel", nil, []netlink.Route{a, b}, []string{"10.244.2.0/24 via 192.168.77.2", "10.244.3.0/24 via 192.168.77.3"}, nil, nil},
		{"node removed", []netlink.Route{kernel(a), kernel(b)}, []netlink.Route{a}, nil, nil, []string{"10.244.3.0/24 via 192.168.77.3"}},
		{"node added", []netlink.Route{kernel(a)}, []netlink.Route{a, c}, []string{"10.244.4.0/24 via 192.168.77.4"}, nil, nil},
		{"gateway changed", []netlink.Route{kernel(a), kernel(b)}, []netlink.Route{a, bMoved}, nil, []string{"10.244.3.0/24 via 192.168.77.33"}, nil},
		{"backend switched", []netlink.Route{kernel(b)}, []netlink.Route{bVXLAN}, nil, []string{"10.244.3.0/24 via 10.244.3.0"}, nil},
		{"onlink flag missing", []netlink.Route{kernel(spec("10.244.3.0/24", "10.244.3.0", 5, false))}, []netlink.Route{bVXLAN}, nil, []string{"10.244.3.0/24 via 10.244.3.0"}, nil},
		{"extra metric copy removed", []netlink.Route{kernel(b), bMetric}, []netlink.Route{b}, nil, nil, []string{"10.244.3.0/24 via 192.168.77.3"}},
		{"only a metric copy: add ours, drop it", []netlink.Route{bMetric}, []netlink.Route{b}, []string{"10.244.3.0/24 via 192.168.77.3"}, nil, []string{"10.244.3.0/24 via 192.168.77.3"}},
		{"nothing wanted", []netlink.Route{kernel(a)}, nil, nil, nil, []string{"10.244.2.0/24 via 192.168.77.2"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := planRoutes(tc.existing, tc.want)
			for _, x := range []struct {
				what      string
				got, want []string
			}{{"add", str(p.add), tc.add}, {"update", str(p.update), tc.update}, {"del", str(p.del), tc.del}} {
				if x.want == nil {
					x.want = []string{}
				}
				if !reflect.DeepEqual(x.got, x.want) {
					t.Errorf("%s = %q, want %q", x.what, x.got, x.want)
				}
			}
		})
	}
}

func TestPlanNeighbors(t *testing.T) {
	w := func(ip, m string) netlink.Neigh {
		return wantNeigh(NeighborSpec{IP: net.ParseIP(ip), MAC: mac(m)}, 5)
	}
	withState := func(n netlink.Neigh, state int) netlink.Neigh {
		n.State = state
		n.IP = n.IP.To16()
		return n
	}
	n2 := w("10.244.2.0", "02:00:00:00:00:02")
	n3 := w("10.244.3.0", "02:00:00:00:00:03")
	n3new := w("10.244.3.0", "02:00:00:00:00:33")
	arp := withState(w("10.244.1.7", "02:00:00:00:00:07"), netlink.NUD_REACHABLE)
	tests := []struct {
		name             string
		existing, want   []netlink.Neigh
		add, update, del int
	}{
		{"converged, ARP entry ignored", []netlink.Neigh{withState(n2, netlink.NUD_PERMANENT), withState(n3, netlink.NUD_PERMANENT), arp}, []netlink.Neigh{n2, n3}, 0, 0, 0},
		{"missing", []netlink.Neigh{arp}, []netlink.Neigh{n2, n3}, 2, 0, 0},
		{"stale removed", []netlink.Neigh{withState(n2, netlink.NUD_PERMANENT), withState(n3, netlink.NUD_PERMANENT)}, []netlink.Neigh{n2}, 0, 0, 1},
		{"MAC changed", []netlink.Neigh{withState(n3, netlink.NUD_PERMANENT)}, []netlink.Neigh{n3new}, 0, 1, 0},
		{"kernel-made entry for a wanted IP is overwritten", []netlink.Neigh{withState(n3, netlink.NUD_FAILED)}, []netlink.Neigh{n3}, 1, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := planNeighbors(tc.existing, tc.want)
			if len(p.add) != tc.add || len(p.update) != tc.update || len(p.del) != tc.del {
				t.Fatalf("plan add %v update %v del %v; want %d/%d/%d", p.add, p.update, p.del, tc.add, tc.update, tc.del)
			}
			for _, d := range p.del {
				if d.IP.Equal(arp.IP) {
					t.Fatal("plan deletes a kernel-made ARP entry")
				}
			}
		})
	}
}

func TestPlanFDB(t *testing.T) {
	w := func(m, dst string) netlink.Neigh {
		return wantFDB(FDBSpec{MAC: mac(m), Dst: net.ParseIP(dst)}, 5)
	}
	k := func(n netlink.Neigh) netlink.Neigh { n.IP = n.IP.To16(); return n }
	m2 := w("02:00:00:00:00:02", "192.168.77.2")
	m3 := w("02:00:00:00:00:03", "192.168.77.3")
	m3moved := w("02:00:00:00:00:03", "192.168.77.33")
	m3extra := w("02:00:00:00:00:03", "192.168.77.99")
	mcast := netlink.Neigh{LinkIndex: 5, Family: syscall.AF_BRIDGE, HardwareAddr: mac("33:33:00:00:00:01"), Flags: netlink.NTF_SELF, State: netlink.NUD_PERMANENT}

	tests := []struct {
		name             string
		existing, want   []netlink.Neigh
		add, update, del []string
	}{
		{"converged", []netlink.Neigh{k(m2), k(m3), mcast}, []netlink.Neigh{m3, m2}, nil, nil, nil},
		{"missing", nil, []netlink.Neigh{m2, m3}, []string{"02:00:00:00:00:02>192.168.77.2", "02:00:00:00:00:03>192.168.77.3"}, nil, nil},
		{"stale removed", []netlink.Neigh{k(m2), k(m3)}, []netlink.Neigh{m2}, nil, nil, []string{"02:00:00:00:00:03>192.168.77.3"}},
		{"dst changed: replaced", []netlink.Neigh{k(m2), k(m3)}, []netlink.Neigh{m2, m3moved}, nil, []string{"02:00:00:00:00:03>192.168.77.33"}, nil},
		{"extra dst for wanted MAC removed", []netlink.Neigh{k(m3), k(m3extra)}, []netlink.Neigh{m3}, nil, nil, []string{"02:00:00:00:00:03>192.168.77.99"}},
		{"two wrong dsts: one dropped, one replaced", []netlink.Neigh{k(m3extra), k(m3moved)}, []netlink.Neigh{m3}, nil, []string{"02:00:00:00:00:03>192.168.77.3"}, []string{"02:00:00:00:00:03>192.168.77.33"}},
	}
	str := func(ns []netlink.Neigh) []string {
		out := []string{}
		for _, n := range ns {
			out = append(out, n.HardwareAddr.String()+">"+n.IP.String())
		}
		return out
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := planFDB(tc.existing, tc.want)
			for _, x := range []struct {
				what      string
				got, want []string
			}{{"add", str(p.add), tc.add}, {"update", str(p.update), tc.update}, {"del", str(p.del), tc.del}} {
				if x.want == nil {
					x.want = []string{}
				}
				if !reflect.DeepEqual(x.got, x.want) {
					t.Errorf("%s = %q, want %q", x.what, x.got, x.want)
				}
			}
			for _, d := range p.del {
				if d.Family != syscall.AF_BRIDGE || d.Flags != netlink.NTF_SELF {
					t.Errorf("delete %+v is not a self FDB delete", d)
				}
			}
		})
	}
}
