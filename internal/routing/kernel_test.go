package routing

import (
	"net"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
)

func mustNew(t *testing.T, kind string, cfg Config) Backend {
	t.Helper()
	b, err := New(kind, cfg)
	if err != nil {
		t.Fatalf("New(%q): %v", kind, err)
	}
	return b
}

func mustSync(t *testing.T, who string, b Backend, remotes []Node) SyncStats {
	t.Helper()
	st, err := b.Sync(remotes)
	if err != nil {
		t.Fatalf("%s: Sync: %v", who, err)
	}
	return st
}

func wantStats(t *testing.T, who string, got, want SyncStats) {
	t.Helper()
	if got != want {
		t.Fatalf("%s: Sync stats %v, want %v", who, got, want)
	}
}

// hasForeignRoute reports whether the node still has the non-podnet route to dst.
func hasForeignRoute(t *testing.T, n *testNS, dst string) bool {
	t.Helper()
	routes, err := n.h.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range routes {
		if r.Dst != nil && r.Dst.String() == dst && r.Protocol != RouteProtocol {
			return true
		}
	}
	return false
}

func checkHostGWState(t *testing.T, ln *labNode, remotes []Node) {
	t.Helper()
	d, err := DesiredHostGW(ln.node, "eth0", []*net.IPNet{{IP: net.IPv4(192, 168, 77, 0).To4(), Mask: net.CIDRMask(24, 32)}}, remotes)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := readState(t, ln.testNS), stateOf(d); !sameState(got, want) {
		t.Fatalf("%s kernel state:\n%s\nwant:\n%s", ln.node.Name, got, want)
	}
	if len(d.Routes) == 0 && len(remotes) > 1 {
		t.Fatalf("%s: empty desired state for %d remotes", ln.node.Name, len(remotes))
	}
}

func TestHostGWCluster(t *testing.T) {
	requireRoot(t)
	l := newLab(t, 3)
	n1, n2, n3 := l.nodes[0], l.nodes[1], l.nodes[2]
	all := l.remotes()

	// Someone else's route, and a podnet route left behind for a node deleted while the agent was
	// down.
	n1.ip(t, "route", "add", "10.99.0.0/24", "via", "192.168.77.3", "dev", "eth0")
	n1.ip(t, "route", "add", "10.244.99.0/24", "via", "192.168.77.9", "dev", "eth0", "proto", "98")

	l.checkTraffic(t) // nothing routed yet

	bs := make([]Backend, len(l.nodes))
	for i, n := range l.nodes {
		bs[i] = mustNew(t, KindHostGW, Config{Handle: n.h, Underlay: "eth0", Local: n.node})
		if bs[i].Name() != KindHostGW {
			t.Fatalf("Name() = %q", bs[i].Name())
		}
		info, err := bs[i].Setup()
		if err != nil {
			t.Fatalf("%s Setup: %v", n.node.Name, err)
		}
		if info.MTU != 1500 || info.VTEPMAC != nil {
			t.Fatalf("%s Setup: %+v, want MTU 1500 and no VTEP MAC", n.node.Name, info)
		}
	}
	for i, n := range l.nodes {
		want := SyncStats{Added: 2}
		if n == n1 {
			want.Removed = 1 // the stale 10.244.99.0/24
		}
		wantStats(t, n.node.Name, mustSync(t, n.node.Name, bs[i], all), want)
		checkHostGWState(t, n, all)
	}
	l.checkTraffic(t, n1, n2, n3)

	t.Run("second sync writes nothing", func(t *testing.T) {
		for i, n := range l.nodes {
			wantStats(t, n.node.Name, mustSync(t, n.node.Name, bs[i], all), SyncStats{})
		}
	})

	t.Run("agent restart adopts", func(t *testing.T) {
		for i, n := range l.nodes {
			h, err := netlink.NewHandleAt(n.ns)
			if err != nil {
				t.Fatal(err)
			}
			defer h.Close()
			b := mustNew(t, KindHostGW, Config{Handle: h, Local: n.node}) // underlay found from InternalIP
			if _, err := b.Setup(); err != nil {
				t.Fatal(err)
			}
			wantStats(t, n.node.Name, mustSync(t, n.node.Name, b, all), SyncStats{})
			_ = i
		}
	})

	t.Run("changed InternalIP updates in place", func(t *testing.T) {
		moved := append([]Node(nil), all...)
		moved[2].InternalIP = net.IPv4(192, 168, 77, 33).To4()
		wantStats(t, "node1", mustSync(t, "node1", bs[0], moved), SyncStats{Updated: 1})
		checkHostGWState(t, n1, moved)
		wantStats(t, "node1", mustSync(t, "node1", bs[0], all), SyncStats{Updated: 1})
		checkHostGWState(t, n1, all)
	})

	t.Run("remove node and add it back", func(t *testing.T) {
		two := all[:2]
		for i, n := range []*labNode{n1, n2} {
			wantStats(t, n.node.Name, mustSync(t, n.node.Name, bs[i], two), SyncStats{Removed: 1})
			checkHostGWState(t, n, two)
		}
		l.checkTraffic(t, n1, n2)
		for i, n := range []*labNode{n1, n2} {
			wantStats(t, n.node.Name, mustSync(t, n.node.Name, bs[i], all), SyncStats{Added: 1})
			checkHostGWState(t, n, all)
		}
		l.checkTraffic(t, n1, n2, n3)
	})

	t.Run("node off the underlay subnet is an error naming it", func(t *testing.T) {
		far := Node{Name: "far-node", PodCIDR: &net.IPNet{IP: net.IPv4(10, 244, 50, 0).To4(), Mask: net.CIDRMask(24, 32)},
			InternalIP: net.IPv4(172, 31, 0, 9).To4()}
		st, err := bs[0].Sync(append(append([]Node(nil), all...), far))
		if err == nil || !strings.Contains(err.Error(), `"far-node"`) {
			t.Fatalf("Sync with off-subnet node: err = %v, want one naming far-node", err)
		}
		wantStats(t, "node1", st, SyncStats{})
		checkHostGWState(t, n1, all) // the other nodes stay programmed
		l.checkTraffic(t, n1, n2, n3)
	})

	t.Run("teardown", func(t *testing.T) {
		for i, n := range l.nodes {
			if err := bs[i].Teardown(); err != nil {
				t.Fatal(err)
			}
			if err := bs[i].Teardown(); err != nil {
				t.Fatalf("second Teardown: %v", err)
			}
			if ks := readState(t, n.testNS); len(ks.Routes)+len(ks.Neighbors)+len(ks.FDB) != 0 {
				t.Fatalf("%s after teardown:\n%s", n.node.Name, ks)
			}
		}
		if !hasForeignRoute(t, n1.testNS, "10.99.0.0/24") {
			t.Fatal("foreign route 10.99.0.0/24 was removed")
		}
		l.checkTraffic(t)
	})
	if !hasForeignRoute(t, n1.testNS, "10.99.0.0/24") {
		t.Fatal("foreign route 10.99.0.0/24 was removed")
	}
}

func checkVXLANState(t *testing.T, ln *labNode, remotes []Node) {
	t.Helper()
	d, err := DesiredVXLAN(ln.node, VXLANDevice, remotes)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := readState(t, ln.testNS), stateOf(d); !sameState(got, want) {
		t.Fatalf("%s kernel state:\n%s\nwant:\n%s", ln.node.Name, got, want)
	}
}

// vxlanLink returns the node's pn-vxlan device.
func vxlanLink(t *testing.T, n *testNS) *netlink.Vxlan {
	t.Helper()
	l, err := n.h.LinkByName(VXLANDevice)
	if err != nil {
		t.Fatalf("%s: %v", n.name, err)
	}
	vx, ok := l.(*netlink.Vxlan)
	if !ok {
		t.Fatalf("%s: %s is a %s", n.name, VXLANDevice, l.Type())
	}
	return vx
}

func checkVXLANDevice(t *testing.T, ln *labNode, vni, port int) *netlink.Vxlan {
	t.Helper()
	vx := vxlanLink(t, ln.testNS)
	eth0, err := ln.h.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if vx.VxlanId != vni || vx.Port != port || !vx.SrcAddr.Equal(ln.node.InternalIP) ||
		vx.VtepDevIndex != eth0.Attrs().Index || vx.Learning || vx.MTU != 1450 || vx.Flags&net.FlagUp == 0 {
		t.Fatalf("%s: %s is vni %d port %d local %s dev %d learning %v mtu %d flags %v; want vni %d port %d local %s dev %d, no learning, mtu 1450, up",
			ln.node.Name, VXLANDevice, vx.VxlanId, vx.Port, vx.SrcAddr, vx.VtepDevIndex, vx.Learning, vx.MTU, vx.Flags,
			vni, port, ln.node.InternalIP, eth0.Attrs().Index)
	}
	addrs, err := ln.h.AddrList(vx, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	want := ln.node.PodCIDR.IP.String() + "/32"
	if len(addrs) != 1 || addrs[0].IPNet.String() != want {
		t.Fatalf("%s: %s addresses %v, want only %s", ln.node.Name, VXLANDevice, addrs, want)
	}
	return vx
}

func TestVXLANCluster(t *testing.T) {
	requireRoot(t)
	l := newLab(t, 3)
	n1, n2, n3 := l.nodes[0], l.nodes[1], l.nodes[2]

	n1.ip(t, "route", "add", "10.99.0.0/24", "via", "192.168.77.3", "dev", "eth0")

	bs := make([]Backend, len(l.nodes))
	for i, n := range l.nodes {
		bs[i] = mustNew(t, KindVXLAN, Config{Handle: n.h, Underlay: "eth0", Local: n.node})
		if bs[i].Name() != KindVXLAN {
			t.Fatalf("Name() = %q", bs[i].Name())
		}
		info, err := bs[i].Setup()
		if err != nil {
			t.Fatalf("%s Setup: %v", n.node.Name, err)
		}
		vx := checkVXLANDevice(t, n, DefaultVNI, DefaultPort)
		if info.MTU != 1450 || info.VTEPMAC.String() != vx.HardwareAddr.String() {
			t.Fatalf("%s Setup: %+v, want MTU 1450 and MAC %s", n.node.Name, info, vx.HardwareAddr)
		}
		n.node.VTEPMAC = info.VTEPMAC // what the agent publishes in the annotation
		// Pods get the backend's MTU.
		n.ip(t, "link", "set", "pn-pod", "mtu", "1450")
		n.pod.ip(t, "link", "set", "eth0", "mtu", "1450")
	}
	all := l.remotes()

	t.Run("node without a published MAC is skipped", func(t *testing.T) {
		pending := append([]Node(nil), all...)
		pending[2].VTEPMAC = nil
		wantStats(t, "node1", mustSync(t, "node1", bs[0], pending), SyncStats{Added: 3})
		checkVXLANState(t, n1, pending)
		if ks := readState(t, n1.testNS); len(ks.Routes) != 1 {
			t.Fatalf("node1 with node3 pending:\n%s", ks)
		}
	})

	for i, n := range l.nodes {
		want := SyncStats{Added: 6}
		if n == n1 {
			want = SyncStats{Added: 3} // node2's entries are already there
		}
		wantStats(t, n.node.Name, mustSync(t, n.node.Name, bs[i], all), want)
		checkVXLANState(t, n, all)
	}
	l.checkTraffic(t, n1, n2, n3)

	t.Run("second sync writes nothing", func(t *testing.T) {
		for i, n := range l.nodes {
			wantStats(t, n.node.Name, mustSync(t, n.node.Name, bs[i], all), SyncStats{})
		}
	})

	t.Run("agent restart adopts device and MAC", func(t *testing.T) {
		for _, n := range l.nodes {
			before := vxlanLink(t, n.testNS)
			h, err := netlink.NewHandleAt(n.ns)
			if err != nil {
				t.Fatal(err)
			}
			defer h.Close()
			local := n.node
			local.VTEPMAC = nil // the agent may not know its old annotation
			b := mustNew(t, KindVXLAN, Config{Handle: h, Underlay: "eth0", Local: local})
			info, err := b.Setup()
			if err != nil {
				t.Fatal(err)
			}
			after := vxlanLink(t, n.testNS)
			if info.VTEPMAC.String() != n.node.VTEPMAC.String() || after.Index != before.Index {
				t.Fatalf("%s: restart changed the device: MAC %s→%s, index %d→%d", n.node.Name,
					n.node.VTEPMAC, info.VTEPMAC, before.Index, after.Index)
			}
			wantStats(t, n.node.Name, mustSync(t, n.node.Name, b, all), SyncStats{})
		}
	})

	t.Run("remove node and add it back", func(t *testing.T) {
		two := all[:2]
		for i, n := range []*labNode{n1, n2} {
			wantStats(t, n.node.Name, mustSync(t, n.node.Name, bs[i], two), SyncStats{Removed: 3})
			checkVXLANState(t, n, two)
		}
		l.checkTraffic(t, n1, n2)
		for i, n := range []*labNode{n1, n2} {
			wantStats(t, n.node.Name, mustSync(t, n.node.Name, bs[i], all), SyncStats{Added: 3})
			checkVXLANState(t, n, all)
		}
		l.checkTraffic(t, n1, n2, n3)
	})

	t.Run("changed InternalIP and MAC are fixed", func(t *testing.T) {
		moved := append([]Node(nil), all...)
		moved[2].InternalIP = net.IPv4(192, 168, 77, 33).To4()
		// FDB entry for node3's MAC now points elsewhere: replaced in place.
		wantStats(t, "node1", mustSync(t, "node1", bs[0], moved), SyncStats{Updated: 1})
		checkVXLANState(t, n1, moved)
		remac := append([]Node(nil), all...)
		remac[2].VTEPMAC = net.HardwareAddr{0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee}
		// neighbour updated; FDB: old MAC (pointing at .33) removed, new MAC added.
		wantStats(t, "node1", mustSync(t, "node1", bs[0], remac), SyncStats{Updated: 1, Added: 1, Removed: 1})
		checkVXLANState(t, n1, remac)
		wantStats(t, "node1", mustSync(t, "node1", bs[0], all), SyncStats{Updated: 1, Added: 1, Removed: 1})
		checkVXLANState(t, n1, all)
		l.checkTraffic(t, n1, n2, n3)
	})

	t.Run("sync heals a deleted device with the same MAC", func(t *testing.T) {
		mac := vxlanLink(t, n2.testNS).HardwareAddr.String()
		n2.ip(t, "link", "del", VXLANDevice)
		st := mustSync(t, "node2", bs[1], all)
		if st.Added < 6 {
			t.Fatalf("node2 Sync after device loss: %v, want device, address and 6 entries re-added", st)
		}
		if got := checkVXLANDevice(t, n2, DefaultVNI, DefaultPort).HardwareAddr.String(); got != mac {
			t.Fatalf("recreated device MAC %s, want the published %s", got, mac)
		}
		checkVXLANState(t, n2, all)
		wantStats(t, "node2", mustSync(t, "node2", bs[1], all), SyncStats{})
		l.checkTraffic(t, n1, n2, n3)
	})

	t.Run("teardown", func(t *testing.T) {
		for i, n := range l.nodes {
			if err := bs[i].Teardown(); err != nil {
				t.Fatal(err)
			}
			if err := bs[i].Teardown(); err != nil {
				t.Fatalf("second Teardown: %v", err)
			}
			if _, err := n.h.LinkByName(VXLANDevice); err == nil {
				t.Fatalf("%s: %s still exists", n.node.Name, VXLANDevice)
			}
			if ks := readState(t, n.testNS); len(ks.Routes) != 0 {
				t.Fatalf("%s after teardown:\n%s", n.node.Name, ks)
			}
		}
		if !hasForeignRoute(t, n1.testNS, "10.99.0.0/24") {
			t.Fatal("foreign route 10.99.0.0/24 was removed")
		}
		l.checkTraffic(t)
	})
}

func TestVXLANSetupAdoptsAndFixes(t *testing.T) {
	requireRoot(t)
	l := newLab(t, 1)
	n := l.nodes[0]
	cfg := Config{Handle: n.h, Underlay: "eth0", Local: n.node, VNI: 7, Port: 4789}

	t.Run("wrong attributes: recreated with the same MAC", func(t *testing.T) {
		n.ip(t, "link", "add", VXLANDevice, "address", "02:11:22:33:44:55", "type", "vxlan", "id", "42",
			"dstport", "8472", "local", "192.168.77.1", "dev", "eth0", "learning")
		info, err := mustNew(t, KindVXLAN, cfg).Setup()
		if err != nil {
			t.Fatal(err)
		}
		vx := checkVXLANDevice(t, n, 7, 4789)
		if vx.HardwareAddr.String() != "02:11:22:33:44:55" || info.VTEPMAC.String() != "02:11:22:33:44:55" {
			t.Fatalf("MAC %s (reported %s), want 02:11:22:33:44:55 kept", vx.HardwareAddr, info.VTEPMAC)
		}
	})

	t.Run("mutable attributes fixed in place", func(t *testing.T) {
		before := vxlanLink(t, n.testNS)
		n.ip(t, "link", "set", VXLANDevice, "down", "mtu", "1300")
		n.ip(t, "addr", "add", "10.9.9.9/24", "dev", VXLANDevice)
		n.ip(t, "addr", "del", "10.244.1.0/32", "dev", VXLANDevice)
		b := mustNew(t, KindVXLAN, cfg)
		if _, err := b.Setup(); err != nil {
			t.Fatal(err)
		}
		after := checkVXLANDevice(t, n, 7, 4789)
		if after.Index != before.Index || after.HardwareAddr.String() != before.HardwareAddr.String() {
			t.Fatalf("device recreated: index %d→%d MAC %s→%s", before.Index, after.Index, before.HardwareAddr, after.HardwareAddr)
		}
		if _, err := b.Setup(); err != nil {
			t.Fatal(err)
		}
		if again := vxlanLink(t, n.testNS); again.Index != before.Index {
			t.Fatal("second Setup recreated the device")
		}
		// Converged: a Sync with no remotes writes nothing.
		wantStats(t, "node1", mustSync(t, "node1", b, nil), SyncStats{})
	})

	t.Run("published MAC reused when the device is missing", func(t *testing.T) {
		n.ip(t, "link", "del", VXLANDevice)
		c := cfg
		c.Local.VTEPMAC = net.HardwareAddr{0x02, 0x00, 0x5e, 0x10, 0x20, 0x30}
		info, err := mustNew(t, KindVXLAN, c).Setup()
		if err != nil {
			t.Fatal(err)
		}
		if got := checkVXLANDevice(t, n, 7, 4789).HardwareAddr.String(); got != "02:00:5e:10:20:30" || info.VTEPMAC.String() != got {
			t.Fatalf("MAC %s, want the published 02:00:5e:10:20:30", got)
		}
	})

	t.Run("non-vxlan link with our name is replaced", func(t *testing.T) {
		n.ip(t, "link", "del", VXLANDevice)
		n.ip(t, "link", "add", VXLANDevice, "type", "bridge")
		b := mustNew(t, KindVXLAN, cfg)
		if _, err := b.Setup(); err != nil {
			t.Fatal(err)
		}
		checkVXLANDevice(t, n, 7, 4789)
		if err := b.Teardown(); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("InternalIP not on the underlay", func(t *testing.T) {
		c := cfg
		c.Local.InternalIP = net.IPv4(192, 168, 78, 1)
		_, err := mustNew(t, KindVXLAN, c).Setup()
		if err == nil || !strings.Contains(err.Error(), "192.168.78.1") {
			t.Fatalf("Setup with foreign InternalIP: %v", err)
		}
		c.Underlay = "nosuch0"
		_, err = mustNew(t, KindHostGW, c).Setup()
		if err == nil || !strings.Contains(err.Error(), "nosuch0") {
			t.Fatalf("Setup with missing underlay: %v", err)
		}
	})
}
