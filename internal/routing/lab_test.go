package routing

// Test harness for the kernel tests: a small lab of network namespaces. An underlay namespace holds
// a bridge; every node namespace has eth0 on that bridge and one pod namespace behind a veth. All
// names are unique per test run and everything is removed in t.Cleanup.

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces")
	}
}

func randHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

func ipCmd(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// testNS is one namespace with a netlink handle bound to it.
type testNS struct {
	name string
	ns   netns.NsHandle
	h    *netlink.Handle
}

// newNS creates a named namespace and registers its removal.
func newNS(t *testing.T, name string) *testNS {
	t.Helper()
	out, err := exec.Command("ip", "netns", "add", name).CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	n := &testNS{name: name}
	t.Cleanup(func() {
		if n.h != nil {
			n.h.Close()
		}
		if n.ns.IsOpen() {
			n.ns.Close()
		}
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	if n.ns, err = netns.GetFromName(name); err != nil {
		t.Fatalf("open namespace %s: %v", name, err)
	}
	if n.h, err = netlink.NewHandleAt(n.ns); err != nil {
		t.Fatalf("netlink handle in %s: %v", name, err)
	}
	ipCmd(t, "-n", name, "link", "set", "lo", "up")
	return n
}

func (n *testNS) ip(t *testing.T, args ...string) {
	t.Helper()
	ipCmd(t, append([]string{"-n", n.name}, args...)...)
}

func (n *testNS) sysctl(t *testing.T, kv string) {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", n.name, "sysctl", "-q", "-w", kv).CombinedOutput()
	if err != nil {
		t.Fatalf("sysctl %s in %s: %v: %s", kv, n.name, err, out)
	}
}

// inNS runs fn on a dedicated, locked OS thread switched into ns, and switches back afterwards.
// Sockets fn opens belong to ns. If switching back fails the thread stays locked and dies with its
// goroutine, so no other goroutine ever runs in the wrong namespace.
func inNS(ns netns.NsHandle, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		if err := netns.Set(ns); err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			errc <- fmt.Errorf("switch back to the original namespace: %w", err)
			return // thread stays locked and is discarded
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// labNode is a node namespace with its pod.
type labNode struct {
	*testNS
	node Node
	pod  *testNS
	// podIP is the pod's address inside node.PodCIDR.
	podIP net.IP
	ln    net.Listener
}

// lab is an underlay bridge with nodes on it.
type lab struct {
	id       string
	underlay *testNS
	nodes    []*labNode
}

const echoPort = 7777

// newLab builds n nodes: node i (1-based) has eth0 192.168.77.i/24 on the underlay bridge, pod CIDR
// 10.244.i.0/24, the node side of the pod veth holds 10.244.i.1/24, the pod 10.244.i.2/24 with a
// default route via .1, and an echo listener that reports the peer address it sees.
func newLab(t *testing.T, n int) *lab {
	t.Helper()
	l := &lab{id: "pntest-" + randHex(4)}
	l.underlay = newNS(t, l.id+"-ul")
	l.underlay.ip(t, "link", "add", "br0", "type", "bridge")
	l.underlay.ip(t, "link", "set", "br0", "up")
	for i := 1; i <= n; i++ {
		ln := &labNode{testNS: newNS(t, fmt.Sprintf("%s-n%d", l.id, i))}
		ln.node = Node{
			Name:       fmt.Sprintf("node%d", i),
			PodCIDR:    &net.IPNet{IP: net.IPv4(10, 244, byte(i), 0).To4(), Mask: net.CIDRMask(24, 32)},
			InternalIP: net.IPv4(192, 168, 77, byte(i)).To4(),
		}
		port := fmt.Sprintf("ul%d", i)
		ln.ip(t, "link", "add", "eth0", "type", "veth", "peer", "name", port, "netns", l.underlay.name)
		l.underlay.ip(t, "link", "set", port, "master", "br0", "up")
		ln.ip(t, "addr", "add", ln.node.InternalIP.String()+"/24", "dev", "eth0")
		ln.ip(t, "link", "set", "eth0", "up")
		ln.sysctl(t, "net.ipv4.ip_forward=1")

		ln.pod = newNS(t, fmt.Sprintf("%s-p%d", l.id, i))
		ln.podIP = net.IPv4(10, 244, byte(i), 2).To4()
		ln.ip(t, "link", "add", "pn-pod", "type", "veth", "peer", "name", "eth0", "netns", ln.pod.name)
		ln.ip(t, "addr", "add", fmt.Sprintf("10.244.%d.1/24", i), "dev", "pn-pod")
		ln.ip(t, "link", "set", "pn-pod", "up")
		ln.pod.ip(t, "addr", "add", ln.podIP.String()+"/24", "dev", "eth0")
		ln.pod.ip(t, "link", "set", "eth0", "up")
		ln.pod.ip(t, "route", "add", "default", "via", fmt.Sprintf("10.244.%d.1", i))

		if err := inNS(ln.pod.ns, func() error {
			var err error
			ln.ln, err = net.Listen("tcp4", fmt.Sprintf("0.0.0.0:%d", echoPort))
			return err
		}); err != nil {
			t.Fatalf("listen in %s: %v", ln.pod.name, err)
		}
		t.Cleanup(func() { ln.ln.Close() })
		go serveEcho(ln.ln)
		l.nodes = append(l.nodes, ln)
	}
	return l
}

// serveEcho answers every connection with the peer address it sees, then closes it.
func serveEcho(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			fmt.Fprintf(c, "%s\n", c.RemoteAddr().(*net.TCPAddr).IP)
		}()
	}
}

// dial connects from one pod to another's echo listener and returns the source address the
// server saw.
func dial(from, to *labNode) (string, error) {
	var c net.Conn
	err := inNS(from.pod.ns, func() error {
		var err error
		c, err = net.DialTimeout("tcp4", fmt.Sprintf("%s:%d", to.podIP, echoPort), 2*time.Second)
		return err
	})
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("read reply: %w", err)
	}
	return strings.TrimSpace(line), nil
}

// nodes returns the routing Nodes of the lab.
func (l *lab) remotes() []Node {
	var out []Node
	for _, n := range l.nodes {
		out = append(out, n.node)
	}
	return out
}

// checkTraffic dials from every pod to every other pod on another node concurrently. Pairs whose
// endpoints are both in reachable must work and the server must see the client pod's own IP; all
// other pairs must fail.
func (l *lab) checkTraffic(t *testing.T, reachable ...*labNode) {
	t.Helper()
	ok := map[*labNode]bool{}
	for _, n := range reachable {
		ok[n] = true
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	var errs []string
	for _, a := range l.nodes {
		for _, b := range l.nodes {
			if a == b {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				seen, err := dial(a, b)
				mu.Lock()
				defer mu.Unlock()
				want := ok[a] && ok[b]
				switch {
				case want && err != nil:
					errs = append(errs, fmt.Sprintf("%s pod → %s pod: %v", a.node.Name, b.node.Name, err))
				case want && seen != a.podIP.String():
					errs = append(errs, fmt.Sprintf("%s pod → %s pod: server saw source %s, want %s (NAT?)", a.node.Name, b.node.Name, seen, a.podIP))
				case !want && err == nil:
					errs = append(errs, fmt.Sprintf("%s pod → %s pod: connected, want failure", a.node.Name, b.node.Name))
				}
			}()
		}
	}
	wg.Wait()
	sort.Strings(errs)
	for _, e := range errs {
		t.Error(e)
	}
	if len(errs) > 0 {
		t.FailNow()
	}
}

// kernelState renders podnet's objects on a node as sorted strings: podnet routes, permanent
// neighbours and FDB entries on pn-vxlan (if it exists).
type kernelState struct {
	Routes, Neighbors, FDB []string
}

func readState(t *testing.T, n *testNS) kernelState {
	t.Helper()
	var ks kernelState
	routes, err := listPodnetRoutes(n.h)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range routes {
		link, err := n.h.LinkByIndex(r.LinkIndex)
		if err != nil {
			t.Fatal(err)
		}
		ks.Routes = append(ks.Routes, RouteSpec{Dst: r.Dst, Gw: r.Gw, Dev: link.Attrs().Name,
			OnLink: r.Flags&int(netlink.FLAG_ONLINK) != 0}.String())
	}
	link, err := n.h.LinkByName(VXLANDevice)
	var nf netlink.LinkNotFoundError
	if err != nil && !errors.As(err, &nf) {
		t.Fatal(err)
	}
	if err == nil {
		neighs, err := n.h.NeighList(link.Attrs().Index, netlink.FAMILY_V4)
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range neighs {
			if x.State&netlink.NUD_PERMANENT != 0 {
				ks.Neighbors = append(ks.Neighbors, NeighborSpec{IP: x.IP, MAC: x.HardwareAddr, Dev: VXLANDevice}.String())
			}
		}
		fdb, err := n.h.NeighList(link.Attrs().Index, syscall.AF_BRIDGE)
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range fdb {
			if x.IP != nil {
				ks.FDB = append(ks.FDB, FDBSpec{MAC: x.HardwareAddr, Dst: x.IP, Dev: VXLANDevice}.String())
			}
		}
	}
	sort.Strings(ks.Routes)
	sort.Strings(ks.Neighbors)
	sort.Strings(ks.FDB)
	return ks
}

// stateOf renders a DesiredState the same way readState renders the kernel.
func stateOf(d DesiredState) kernelState {
	var ks kernelState
	for _, r := range d.Routes {
		ks.Routes = append(ks.Routes, r.String())
	}
	for _, n := range d.Neighbors {
		ks.Neighbors = append(ks.Neighbors, n.String())
	}
	for _, f := range d.FDB {
		ks.FDB = append(ks.FDB, f.String())
	}
	sort.Strings(ks.Routes)
	sort.Strings(ks.Neighbors)
	sort.Strings(ks.FDB)
	return ks
}

func (ks kernelState) String() string {
	return fmt.Sprintf("routes:\n  %s\nneighbours:\n  %s\nfdb:\n  %s",
		strings.Join(ks.Routes, "\n  "), strings.Join(ks.Neighbors, "\n  "), strings.Join(ks.FDB, "\n  "))
}

func sameState(a, b kernelState) bool { return a.String() == b.String() }
