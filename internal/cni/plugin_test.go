package cni

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/google/nftables"
	"github.com/google/nftables/userdata"
	"github.com/vishvananda/netlink"
)

func TestAddConfiguresKernel(t *testing.T) {
	n := newNode(t)
	l := n.list("10.250.1.0/24", map[string]any{"dns": map[string]any{"nameservers": []string{"10.96.0.10"}, "search": []string{"svc.cluster.local"}}})
	pod, id, res := n.add(l)

	// Result shape.
	if res.CNIVersion != "1.1.0" {
		t.Errorf("result cniVersion %q", res.CNIVersion)
	}
	if len(res.Interfaces) != 3 {
		t.Fatalf("interfaces %v", res.Interfaces)
	}
	hostVeth := HostVethName(id, "eth0")
	br, host, podIf := res.Interfaces[0], res.Interfaces[1], res.Interfaces[2]
	if br.Name != DefaultBridge || br.Sandbox != "" || host.Name != hostVeth || host.Sandbox != "" || podIf.Name != "eth0" || podIf.Sandbox != nsPath(pod) {
		t.Errorf("interfaces: %v %v %v", br, host, podIf)
	}
	ipc := res.IPs[0]
	if ipc.Address.String() != "10.250.1.2/24" || ipc.Gateway.String() != "10.250.1.1" || ipc.Interface == nil || *ipc.Interface != 2 {
		t.Errorf("ips[0] = %v", ipc)
	}
	if len(res.Routes) != 1 || res.Routes[0].Dst.String() != "0.0.0.0/0" || res.Routes[0].GW.String() != "10.250.1.1" {
		t.Errorf("routes %v", res.Routes)
	}
	if len(res.DNS.Nameservers) != 1 || res.DNS.Nameservers[0] != "10.96.0.10" || res.DNS.Search[0] != "svc.cluster.local" {
		t.Errorf("dns %+v", res.DNS)
	}

	// Node side: bridge with gateway address, host veth on it, hairpin, MTU.
	brLink, err := n.nl.LinkByName(DefaultBridge)
	if err != nil {
		t.Fatal(err)
	}
	if brLink.Type() != "bridge" || brLink.Attrs().Flags&net.FlagUp == 0 || brLink.Attrs().MTU != 1400 {
		t.Errorf("bridge %s: type %s flags %v mtu %d", DefaultBridge, brLink.Type(), brLink.Attrs().Flags, brLink.Attrs().MTU)
	}
	addrs, _ := n.nl.AddrList(brLink, netlink.FAMILY_V4)
	if len(addrs) != 1 || addrs[0].IPNet.String() != "10.250.1.1/24" {
		t.Errorf("bridge addresses %v, want 10.250.1.1/24", addrs)
	}
	hl, err := n.nl.LinkByName(hostVeth)
	if err != nil {
		t.Fatal(err)
	}
	if hl.Attrs().MasterIndex != brLink.Attrs().Index || hl.Attrs().MTU != 1400 || hl.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("host veth: master %d (bridge %d) mtu %d flags %v", hl.Attrs().MasterIndex, brLink.Attrs().Index, hl.Attrs().MTU, hl.Attrs().Flags)
	}
	pi, err := n.nl.LinkGetProtinfo(hl)
	if err != nil || !pi.Hairpin {
		t.Errorf("host veth hairpin: %+v %v", pi, err)
	}

	// Pod side.
	pnl := nlAt(t, pod)
	pl, err := pnl.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if pl.Attrs().MTU != 1400 || pl.Attrs().Flags&net.FlagUp == 0 || pl.Attrs().HardwareAddr.String() != podIf.Mac {
		t.Errorf("pod eth0: mtu %d flags %v mac %s (result %s)", pl.Attrs().MTU, pl.Attrs().Flags, pl.Attrs().HardwareAddr, podIf.Mac)
	}
	paddrs, _ := pnl.AddrList(pl, netlink.FAMILY_V4)
	if len(paddrs) != 1 || paddrs[0].IPNet.String() != "10.250.1.2/24" {
		t.Errorf("pod addresses %v", paddrs)
	}
	routes, _ := pnl.RouteList(pl, netlink.FAMILY_V4)
	var def bool
	for _, r := range routes {
		if (r.Dst == nil || r.Dst.String() == "0.0.0.0/0") && r.Gw.String() == "10.250.1.1" {
			def = true
		}
	}
	if !def {
		t.Errorf("pod has no default route via 10.250.1.1: %v", routes)
	}
	lo, _ := pnl.LinkByName("lo")
	if lo.Attrs().Flags&net.FlagUp == 0 {
		t.Error("pod lo is down")
	}
	if hl.Attrs().ParentIndex != pl.Attrs().Index {
		t.Error("host veth is not the pod interface's peer")
	}

	// IPAM record and anti-spoof element.
	if got := n.records(); len(got) != 1 || got[0] != "10.250.1.2" {
		t.Errorf("IPAM records %v", got)
	}
	b, _ := os.ReadFile(filepath.Join(n.dataDir, "10.250.1.2"))
	if string(b) != id+"\neth0\n" {
		t.Errorf("record content %q", b)
	}
	if got := n.sources(); len(got) != 1 || got[0] != hostVeth+" 10.250.1.2" {
		t.Errorf("anti-spoof set %v", got)
	}

	// The pod reaches its gateway (the node) over the bridge.
	ln := listenTCP(t, n.name, "10.250.1.1:0")
	go acceptAndClose(ln)
	c, err := dialTCP(t, pod, ln.Addr().String())
	if err != nil {
		t.Fatalf("pod -> node gateway: %v", err)
	}
	c.Close()
}

// TestAdoptsExistingBridge: a bridge made by the node agent (no address, no
// fixed MAC, down) is adopted and given the gateway address and a MAC that
// does not follow its ports.
func TestAdoptsExistingBridge(t *testing.T) {
	n := newNode(t)
	if err := n.nl.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: DefaultBridge}}); err != nil {
		t.Fatal(err)
	}
	l := n.list("10.250.16.0/24", nil)
	podA, idA, resA := n.add(l)
	_, _, resB := n.add(l)
	br, err := n.nl.LinkByName(DefaultBridge)
	if err != nil {
		t.Fatal(err)
	}
	mac := br.Attrs().HardwareAddr.String()
	addrs, _ := n.nl.AddrList(br, netlink.FAMILY_V4)
	if br.Attrs().Flags&net.FlagUp == 0 || br.Attrs().MTU != 1400 || len(addrs) != 1 || addrs[0].IPNet.String() != "10.250.16.1/24" || mac != "0a:58:0a:fa:10:01" {
		t.Fatalf("adopted bridge: flags %v mtu %d addrs %v mac %s", br.Attrs().Flags, br.Attrs().MTU, addrs, mac)
	}
	if mac != resA.Interfaces[0].Mac || mac != resB.Interfaces[0].Mac {
		t.Errorf("result bridge MACs %s %s, kernel %s", resA.Interfaces[0].Mac, resB.Interfaces[0].Mac, mac)
	}
	n.del(l, podA, idA)
	br, _ = n.nl.LinkByName(DefaultBridge)
	if br.Attrs().HardwareAddr.String() != mac {
		t.Fatalf("bridge MAC changed from %s to %s when a port left", mac, br.Attrs().HardwareAddr)
	}
}

func acceptAndClose(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		c.Close()
	}
}

func TestPodToPodTCP(t *testing.T) {
	n := newNode(t)
	l := n.list("10.250.2.0/24", nil)
	podA, _, resA := n.add(l)
	podB, _, resB := n.add(l)
	ipA, ipB := podIP(t, resA), podIP(t, resB)
	if ipA.Equal(ipB) {
		t.Fatalf("both pods got %s", ipA)
	}

	ln := listenTCP(t, podB, net.JoinHostPort(ipB.String(), "8080"))
	got := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- "accept: " + err.Error()
			return
		}
		defer c.Close()
		b, _ := io.ReadAll(c)
		got <- c.RemoteAddr().(*net.TCPAddr).IP.String() + " " + string(b)
	}()
	c, err := dialTCP(t, podA, ln.Addr().String())
	if err != nil {
		t.Fatalf("pod A -> pod B: %v", err)
	}
	fmt.Fprint(c, "hello")
	c.Close()
	select {
	case s := <-got:
		if s != ipA.String()+" hello" {
			t.Fatalf("pod B got %q, want %q", s, ipA.String()+" hello")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("pod B received nothing")
	}
}

func TestDelIsIdempotent(t *testing.T) {
	n := newNode(t)
	l := n.list("10.250.3.0/24", nil)
	pod, id, _ := n.add(l)
	hostVeth := HostVethName(id, "eth0")

	n.del(l, pod, id)
	if _, err := n.nl.LinkByName(hostVeth); !isGone(err) {
		t.Errorf("host veth %s still there after DEL: %v", hostVeth, err)
	}
	if _, err := nlAt(t, pod).LinkByName("eth0"); !isGone(err) {
		t.Errorf("pod eth0 still there after DEL: %v", err)
	}
	if got := n.records(); len(got) != 0 {
		t.Errorf("IPAM records after DEL: %v", got)
	}
	if got := n.sources(); len(got) != 0 {
		t.Errorf("anti-spoof elements after DEL: %v", got)
	}
	// Second DEL: everything already gone.
	n.del(l, pod, id)

	// DEL after the pod netns is gone, with the IP still held.
	pod2, id2, _ := n.add(l)
	if out, err := exec.Command("ip", "netns", "del", pod2).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	if err := n.cni.DelNetworkList(context.Background(), l, rt(pod2, id2)); err != nil {
		t.Fatalf("DEL with a missing netns: %v", err)
	}
	if got := n.records(); len(got) != 0 {
		t.Errorf("IPAM records after DEL with missing netns: %v", got)
	}
	if _, err := n.nl.LinkByName(HostVethName(id2, "eth0")); !isGone(err) {
		t.Errorf("host veth after DEL with missing netns: %v", err)
	}
	// DEL of an attachment that was never added.
	if err := n.cni.DelNetworkList(context.Background(), l, rt(pod, "never-added")); err != nil {
		t.Fatalf("DEL of an unknown attachment: %v", err)
	}
	if got := n.veths(); len(got) != 0 {
		t.Errorf("veths left on node: %v", got)
	}
}

func TestAddTwiceReturnsSameIP(t *testing.T) {
	n := newNode(t)
	l := n.list("10.250.4.0/24", nil)
	pod, id, res := n.add(l)
	r2, err := n.cni.AddNetworkList(context.Background(), l, rt(pod, id))
	if err != nil {
		t.Fatalf("second ADD: %v", err)
	}
	res2, _ := current.NewResultFromResult(r2)
	if !podIP(t, res2).Equal(podIP(t, res)) {
		t.Fatalf("second ADD gave %s, first %s", podIP(t, res2), podIP(t, res))
	}
	if got := n.records(); len(got) != 1 {
		t.Fatalf("records after two ADDs: %v", got)
	}
	if got := n.sources(); len(got) != 1 {
		t.Fatalf("anti-spoof elements after two ADDs: %v", got)
	}

	// A foreign interface of the same name in the pod is an error, and the
	// failed ADD keeps nothing.
	other := newNetns(t, "pod")
	if err := nlAt(t, other).LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0"}, PeerName: "peer0"}); err != nil {
		t.Fatal(err)
	}
	_, err = n.cni.AddNetworkList(context.Background(), l, rt(other, "ctr-other"))
	cniErr(t, err, types.ErrInternal, "interface eth0 already exists")
	if got := n.records(); len(got) != 1 {
		t.Fatalf("records after a refused ADD: %v", got)
	}
}

func TestConcurrentAdds(t *testing.T) {
	n := newNode(t)
	l := n.list("10.250.5.0/24", nil)
	const pods = 12
	names := make([]string, pods)
	for i := range names {
		names[i] = newNetns(t, "pod")
	}
	ips := make([]string, pods)
	errs := make([]error, pods)
	var wg sync.WaitGroup
	for i := 0; i < pods; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			r, err := n.cni.AddNetworkList(context.Background(), l, rt(names[i], fmt.Sprintf("ctr-%d", i)))
			if err != nil {
				errs[i] = err
				return
			}
			res, err := current.NewResultFromResult(r)
			if err != nil {
				errs[i] = err
				return
			}
			ips[i] = res.IPs[0].Address.IP.String()
		}(i)
	}
	wg.Wait()
	seen := map[string]bool{}
	for i := 0; i < pods; i++ {
		if errs[i] != nil {
			t.Fatalf("ADD %d: %v", i, errs[i])
		}
		if seen[ips[i]] {
			t.Fatalf("IP %s given twice", ips[i])
		}
		seen[ips[i]] = true
	}
	if got := n.sources(); len(got) != pods {
		t.Fatalf("anti-spoof set has %d elements, want %d", len(got), pods)
	}
	// The table's rules were ensured by 12 racing processes: exactly two.
	c := nftAt(t, n.name)
	table := &nftables.Table{Name: AntiSpoofTable, Family: nftables.TableFamilyBridge}
	rules, err := c.GetRules(table, &nftables.Chain{Name: AntiSpoofChain, Table: table})
	if err != nil {
		t.Fatal(err)
	}
	var comments []string
	for _, r := range rules {
		s, _ := userdata.GetString(r.UserData, userdata.TypeComment)
		comments = append(comments, s)
	}
	sort.Strings(comments)
	if len(rules) != 2 || comments[0] != ruleCommentARP || comments[1] != ruleCommentIP {
		t.Fatalf("anti-spoof rules: %q", comments)
	}
}

func TestExhaustedRange(t *testing.T) {
	n := newNode(t)
	// A /30: .0 node, .1 gateway, .2 the only pod address, .3 broadcast.
	l := n.list("10.250.6.0/30", nil)
	_, _, res := n.add(l)
	if podIP(t, res).String() != "10.250.6.2" {
		t.Fatalf("pod IP %s", podIP(t, res))
	}
	pod2 := newNetns(t, "pod")
	_, err := n.cni.AddNetworkList(context.Background(), l, rt(pod2, "ctr-second"))
	cniErr(t, err, types.ErrInternal, "podCIDR 10.250.6.0/30 is exhausted", "1 pod addresses")
	if got := n.records(); len(got) != 1 {
		t.Errorf("records %v, want only the first pod's", got)
	}
	if got := n.veths(); len(got) != 1 {
		t.Errorf("node veths %v, want only the first pod's", got)
	}
	if _, err := nlAt(t, pod2).LinkByName("eth0"); !isGone(err) {
		t.Errorf("refused pod has eth0: %v", err)
	}
}

func TestFailedAddRollsBack(t *testing.T) {
	n := newNode(t)
	// Something that is not a bridge holds the bridge's name: the ADD fails
	// after the IP was taken, and must give it back.
	if err := n.nl.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "pntestbr"}, PeerName: "pntestbr-p"}); err != nil {
		t.Fatal(err)
	}
	l := n.list("10.250.7.0/24", map[string]any{"bridge": "pntestbr"})
	pod := newNetns(t, "pod")
	_, err := n.cni.AddNetworkList(context.Background(), l, rt(pod, "ctr-x"))
	cniErr(t, err, types.ErrInternal, "bridge pntestbr: exists but is a veth device")
	if got := n.records(); len(got) != 0 {
		t.Errorf("IP leaked: records %v", got)
	}
	if got := n.veths(); len(got) != 2 {
		t.Errorf("node veths %v, want only pntestbr and its peer", got)
	}
}

func TestAddWithMissingNetns(t *testing.T) {
	n := newNode(t)
	l := n.list("10.250.15.0/24", nil)
	_, err := n.cni.AddNetworkList(context.Background(), l, &libcni.RuntimeConf{ContainerID: "ctr-nons", NetNS: "/var/run/netns/pntest-missing-" + randHex(4), IfName: "eth0"})
	cniErr(t, err, types.ErrInvalidNetNS, "pod netns")
	if got := n.records(); len(got) != 0 {
		t.Errorf("IP leaked by an ADD into a missing netns: %v", got)
	}
}

func TestMalformedConfigThroughLibcni(t *testing.T) {
	n := newNode(t)
	pod := newNetns(t, "pod")
	for _, tt := range []struct {
		extra map[string]any
		want  string
	}{
		{map[string]any{"mtu": 100}, "mtu 100: out of range"},
		{map[string]any{"podCIDR": nil}, "podCIDR: missing"},
		{map[string]any{"dataDir": "relative"}, `dataDir "relative": not an absolute path`},
		{map[string]any{"mtu": "big"}, "mtu: must be a number"},
	} {
		l := n.confList("1.1.0", n.pluginConf("10.250.8.0/24", tt.extra))
		_, err := n.cni.AddNetworkList(context.Background(), l, rt(pod, "ctr-bad"))
		cniErr(t, err, types.ErrInvalidNetworkConfig, tt.want)
	}
	if got := n.veths(); len(got) != 0 {
		t.Errorf("veths after refused ADDs: %v", got)
	}
}

func TestCheck(t *testing.T) {
	n := newNode(t)
	l := n.list("10.250.9.0/24", nil)
	pod, id, _ := n.add(l)
	ctx := context.Background()
	if err := n.cni.CheckNetworkList(ctx, l, rt(pod, id)); err != nil {
		t.Fatalf("CHECK after ADD: %v", err)
	}
	pnl := nlAt(t, pod)
	eth0, _ := pnl.LinkByName("eth0")

	if err := pnl.LinkSetMTU(eth0, 1300); err != nil {
		t.Fatal(err)
	}
	cniErr(t, n.cni.CheckNetworkList(ctx, l, rt(pod, id)), types.ErrInternal, "MTU 1300, want 1400")
	pnl.LinkSetMTU(eth0, 1400)

	def := &netlink.Route{LinkIndex: eth0.Attrs().Index, Dst: &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}, Gw: net.ParseIP("10.250.9.1")}
	if err := pnl.RouteDel(def); err != nil {
		t.Fatal(err)
	}
	cniErr(t, n.cni.CheckNetworkList(ctx, l, rt(pod, id)), types.ErrInternal, "no default route via gateway 10.250.9.1")
	if err := pnl.RouteAdd(def); err != nil {
		t.Fatal(err)
	}

	hl, _ := n.nl.LinkByName(HostVethName(id, "eth0"))
	n.nl.LinkSetNoMaster(hl)
	cniErr(t, n.cni.CheckNetworkList(ctx, l, rt(pod, id)), types.ErrInternal, "not attached to bridge podnet0")
	br, _ := n.nl.LinkByName(DefaultBridge)
	n.nl.LinkSetMaster(hl, br)
	n.nl.LinkSetHairpin(hl, true)
	if err := n.cni.CheckNetworkList(ctx, l, rt(pod, id)); err != nil {
		t.Fatalf("CHECK after repair: %v", err)
	}

	addr, _ := netlink.ParseAddr("10.250.9.2/24")
	pnl.AddrDel(eth0, addr)
	cniErr(t, n.cni.CheckNetworkList(ctx, l, rt(pod, id)), types.ErrInternal, "does not have its address 10.250.9.2/24")
	pnl.AddrAdd(eth0, addr)
	pnl.RouteAdd(def)

	if err := os.Remove(filepath.Join(n.dataDir, "10.250.9.2")); err != nil {
		t.Fatal(err)
	}
	cniErr(t, n.cni.CheckNetworkList(ctx, l, rt(pod, id)), types.ErrInternal, "no IP is allocated")
}

func TestGC(t *testing.T) {
	n := newNode(t)
	l := n.list("10.250.10.0/24", nil)
	podA, idA, resA := n.add(l)
	podB, idB, _ := n.add(l)
	// C is added through a second runtime (another libcni cache), so the
	// first runtime's GC cannot DEL it from its cache: only the plugin's GC
	// can clean it up.
	other := *n
	other.cni = libcni.NewCNIConfigWithCacheDir(n.cni.Path, filepath.Join(t.TempDir(), "cache2"), NodeExec{NetNS: n.name})
	podC, idC, resC := other.add(l)
	_ = podC
	// And a record left by a crashed ADD.
	if err := os.WriteFile(filepath.Join(n.dataDir, "10.250.10.200"), []byte("crashed\neth0\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	valid := []types.GCAttachment{{ContainerID: idA, IfName: "eth0"}}
	if err := n.cni.GCNetworkList(context.Background(), l, &libcni.GCArgs{ValidAttachments: valid}); err != nil {
		t.Fatalf("GC: %v", err)
	}
	if got := n.records(); len(got) != 1 || got[0] != podIP(t, resA).String() {
		t.Errorf("records after GC %v, want only A's %s", got, podIP(t, resA))
	}
	if got := n.sources(); len(got) != 1 || got[0] != HostVethName(idA, "eth0")+" "+podIP(t, resA).String() {
		t.Errorf("anti-spoof set after GC %v", got)
	}
	for _, id := range []string{idB, idC} {
		if _, err := n.nl.LinkByName(HostVethName(id, "eth0")); !isGone(err) {
			t.Errorf("host veth of %s survived GC: %v", id, err)
		}
	}
	if _, err := n.nl.LinkByName(HostVethName(idA, "eth0")); err != nil {
		t.Errorf("host veth of the valid attachment: %v", err)
	}
	_ = podB
	_ = resC
	if err := n.cni.CheckNetworkList(context.Background(), l, rt(podA, idA)); err != nil {
		t.Errorf("CHECK of the valid attachment after GC: %v", err)
	}
}

func TestStatus(t *testing.T) {
	n := newNode(t)
	ctx := context.Background()
	l := n.list("10.250.11.0/30", nil)
	if err := n.cni.GetStatusNetworkList(ctx, l); err != nil {
		t.Fatalf("STATUS with a free address: %v", err)
	}
	n.add(l)
	cniErr(t, n.cni.GetStatusNetworkList(ctx, l), types.ErrPluginNotAvailable, "podCIDR 10.250.11.0/30 has no free address")

	file := filepath.Join(t.TempDir(), "not-a-dir")
	os.WriteFile(file, nil, 0o600)
	bad := n.list("10.250.11.0/24", map[string]any{"dataDir": filepath.Join(file, "ipam")})
	cniErr(t, n.cni.GetStatusNetworkList(ctx, bad), types.ErrPluginNotAvailable, "dataDir "+filepath.Join(file, "ipam")+" is not usable")
}

func TestChainedBandwidth(t *testing.T) {
	n := newNode(t)
	if _, err := os.Stat("/usr/lib/cni/bandwidth"); err != nil {
		t.Fatalf("reference bandwidth plugin missing (apt-get install containernetworking-plugins): %v", err)
	}
	// The Debian bandwidth plugin speaks up to 1.0.0.
	l := n.confList("1.0.0",
		n.pluginConf("10.250.12.0/24", nil),
		map[string]any{"type": "bandwidth", "capabilities": map[string]bool{"bandwidth": true}},
	)
	pod := newNetns(t, "pod")
	id := "ctr-bw-" + randHex(4)
	r := rt(pod, id)
	r.CapabilityArgs = map[string]any{"bandwidth": map[string]any{
		"ingressRate": 8_000_000, "ingressBurst": 800_000,
		"egressRate": 4_000_000, "egressBurst": 400_000,
	}}
	out, err := n.cni.AddNetworkList(context.Background(), l, r)
	if err != nil {
		t.Fatalf("ADD podnet-cni + bandwidth: %v", err)
	}
	res, _ := current.NewResultFromResult(out)
	hostVeth := HostVethName(id, "eth0")
	hl, err := n.nl.LinkByName(hostVeth)
	if err != nil {
		t.Fatal(err)
	}
	if !hasTBF(t, n.nl, hl) {
		t.Errorf("no tbf qdisc on host veth %s (ingress shaping)", hostVeth)
	}
	// Egress shaping: bandwidth adds an ifb device to the result and shapes it.
	var ifb netlink.Link
	for _, iface := range res.Interfaces {
		if l, err := n.nl.LinkByName(iface.Name); err == nil && l.Type() == "ifb" {
			ifb = l
		}
	}
	if ifb == nil {
		t.Fatalf("no ifb device in the chained result %v", res.Interfaces)
	}
	if !hasTBF(t, n.nl, ifb) {
		t.Errorf("no tbf qdisc on ifb %s (egress shaping)", ifb.Attrs().Name)
	}
	if err := n.cni.CheckNetworkList(context.Background(), l, r); err != nil {
		t.Errorf("CHECK of the chain: %v", err)
	}
	if err := n.cni.DelNetworkList(context.Background(), l, r); err != nil {
		t.Fatalf("DEL of the chain: %v", err)
	}
	if _, err := n.nl.LinkByName(ifb.Attrs().Name); !isGone(err) {
		t.Errorf("ifb %s survived DEL: %v", ifb.Attrs().Name, err)
	}
	if got := n.records(); len(got) != 0 {
		t.Errorf("records after DEL %v", got)
	}
}

func hasTBF(t *testing.T, h *netlink.Handle, l netlink.Link) bool {
	t.Helper()
	qs, err := h.QdiscList(l)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range qs {
		if q.Type() == "tbf" {
			return true
		}
	}
	return false
}

func TestVersion(t *testing.T) {
	n := newNode(t)
	info, err := n.cni.GetVersionInfo(context.Background(), "podnet-cni")
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(info.SupportedVersions(), ",")
	if got != "0.3.0,0.3.1,0.4.0,1.0.0,1.1.0" {
		t.Fatalf("supported versions %s", got)
	}
}

func TestOlderCNIVersionResult(t *testing.T) {
	n := newNode(t)
	l := n.confList("0.4.0", n.pluginConf("10.250.13.0/24", nil))
	pod := newNetns(t, "pod")
	r, err := n.cni.AddNetworkList(context.Background(), l, rt(pod, "ctr-old"))
	if err != nil {
		t.Fatalf("ADD with cniVersion 0.4.0: %v", err)
	}
	if r.Version() != "0.4.0" {
		t.Fatalf("result version %s, want 0.4.0", r.Version())
	}
	if err := n.cni.CheckNetworkList(context.Background(), l, rt(pod, "ctr-old")); err != nil {
		t.Fatalf("CHECK with cniVersion 0.4.0: %v", err)
	}
	n.del(l, pod, "ctr-old")
}
