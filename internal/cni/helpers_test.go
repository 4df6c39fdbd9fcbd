package cni

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// pluginDir holds the podnet-cni binary built by TestMain (root only).
var pluginDir string

func TestMain(m *testing.M) {
	if os.Geteuid() == 0 {
		dir, err := os.MkdirTemp("", "pntest-cni-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		out, err := exec.Command("go", "build", "-o", filepath.Join(dir, "podnet-cni"), "github.com/podnet/podnet/cmd/podnet-cni").CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "build podnet-cni: %v\n%s", err, out)
			os.RemoveAll(dir)
			os.Exit(1)
		}
		pluginDir = dir
	}
	code := m.Run()
	if pluginDir != "" {
		os.RemoveAll(pluginDir)
	}
	os.Exit(code)
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces)")
	}
}

func randHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// newNetns creates a named network namespace removed when the test ends.
func newNetns(t *testing.T, role string) string {
	t.Helper()
	name := "pntest-" + role + "-" + randHex(4)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() {
		if _, err := os.Stat(nsPath(name)); err != nil {
			return // the test deleted it
		}
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	return name
}

func nsPath(name string) string { return "/var/run/netns/" + name }

// nlAt returns a netlink handle bound to the named namespace.
func nlAt(t *testing.T, name string) *netlink.Handle {
	t.Helper()
	h, err := netns.GetFromName(name)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nl.Close)
	return nl
}

// nftAt returns an nftables connection bound to the named namespace.
func nftAt(t *testing.T, name string) *nftables.Conn {
	t.Helper()
	h, err := netns.GetFromName(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	c, err := nftables.New(nftables.WithNetNSFd(int(h)))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// inNetns runs fn on a locked OS thread switched into the namespace; the
// thread is switched back (or discarded) afterwards. Sockets created in fn
// stay in that namespace.
func inNetns(t *testing.T, name string, fn func() error) {
	t.Helper()
	if err := ns.WithNetNSPath(nsPath(name), func(ns.NetNS) error { return fn() }); err != nil {
		t.Fatalf("in netns %s: %v", name, err)
	}
}

// testNode is a lab-like node: a namespace where the plugin runs, with its
// own IPAM directory and libcni cache.
type testNode struct {
	t       *testing.T
	name    string
	dataDir string
	cni     *libcni.CNIConfig
	nl      *netlink.Handle
}

func newNode(t *testing.T) *testNode {
	t.Helper()
	needRoot(t)
	name := newNetns(t, "node")
	tmp := t.TempDir()
	return &testNode{
		t:       t,
		name:    name,
		dataDir: filepath.Join(tmp, "ipam"),
		cni:     libcni.NewCNIConfigWithCacheDir([]string{pluginDir, "/usr/lib/cni"}, filepath.Join(tmp, "cache"), NodeExec{NetNS: name}),
		nl:      nlAt(t, name),
	}
}

// pluginConf is a podnet-cni plugin entry; extra keys override defaults.
func (n *testNode) pluginConf(podCIDR string, extra map[string]any) map[string]any {
	c := map[string]any{
		"type":    "podnet-cni",
		"podCIDR": podCIDR,
		"dataDir": n.dataDir,
		"mtu":     1400,
	}
	for k, v := range extra {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

// confList builds a conflist of the given plugin entries.
func (n *testNode) confList(version string, plugins ...map[string]any) *libcni.NetworkConfigList {
	n.t.Helper()
	b, err := json.Marshal(map[string]any{"cniVersion": version, "name": "podnet", "plugins": plugins})
	if err != nil {
		n.t.Fatal(err)
	}
	l, err := libcni.ConfListFromBytes(b)
	if err != nil {
		n.t.Fatal(err)
	}
	return l
}

func (n *testNode) list(podCIDR string, extra map[string]any) *libcni.NetworkConfigList {
	return n.confList("1.1.0", n.pluginConf(podCIDR, extra))
}

func rt(pod, containerID string) *libcni.RuntimeConf {
	return &libcni.RuntimeConf{ContainerID: containerID, NetNS: nsPath(pod), IfName: "eth0"}
}

// add runs ADD for a new pod namespace and returns it with the result.
func (n *testNode) add(l *libcni.NetworkConfigList) (pod, containerID string, res *current.Result) {
	n.t.Helper()
	pod = newNetns(n.t, "pod")
	containerID = "ctr-" + randHex(8)
	r, err := n.cni.AddNetworkList(context.Background(), l, rt(pod, containerID))
	if err != nil {
		n.t.Fatalf("ADD %s: %v", containerID, err)
	}
	res, err = current.NewResultFromResult(r)
	if err != nil {
		n.t.Fatal(err)
	}
	return pod, containerID, res
}

func (n *testNode) del(l *libcni.NetworkConfigList, pod, containerID string) {
	n.t.Helper()
	if err := n.cni.DelNetworkList(context.Background(), l, rt(pod, containerID)); err != nil {
		n.t.Fatalf("DEL %s: %v", containerID, err)
	}
}

// records lists the IPAM directory's IP records.
func (n *testNode) records() []string {
	n.t.Helper()
	entries, err := os.ReadDir(n.dataDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		n.t.Fatal(err)
	}
	var ips []string
	for _, e := range entries {
		if net.ParseIP(e.Name()) != nil {
			ips = append(ips, e.Name())
		}
	}
	return ips
}

// vethsOnNode lists the node's veth devices.
func (n *testNode) veths() []string {
	n.t.Helper()
	links, err := n.nl.LinkList()
	if err != nil {
		n.t.Fatal(err)
	}
	var out []string
	for _, l := range links {
		if l.Type() == "veth" {
			out = append(out, l.Attrs().Name)
		}
	}
	return out
}

// sources lists the anti-spoof set as "ifname ip" strings.
func (n *testNode) sources() []string {
	n.t.Helper()
	c := nftAt(n.t, n.name)
	set := &nftables.Set{Table: &nftables.Table{Name: AntiSpoofTable, Family: nftables.TableFamilyBridge}, Name: AntiSpoofSet}
	elems, err := c.GetSetElements(set)
	if err != nil {
		n.t.Fatalf("list %s: %v", AntiSpoofSet, err)
	}
	var out []string
	for _, e := range elems {
		out = append(out, strings.TrimRight(string(e.Key[:16]), "\x00")+" "+net.IP(e.Key[16:20]).String())
	}
	return out
}

func podIP(t *testing.T, res *current.Result) net.IP {
	t.Helper()
	if len(res.IPs) != 1 {
		t.Fatalf("result has %d IPs, want 1: %v", len(res.IPs), res)
	}
	return res.IPs[0].Address.IP
}

// cniErr asserts err is a CNI error with the code and a message containing
// each of want.
func cniErr(t *testing.T, err error, code uint, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want code %d %q", code, want)
	}
	var e *types.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not a CNI error", err, err)
	}
	if e.Code != code {
		t.Errorf("error code %d, want %d (%v)", e.Code, code, e)
	}
	for _, w := range want {
		if !strings.Contains(e.Error(), w) {
			t.Errorf("error %q does not mention %q", e.Error(), w)
		}
	}
}

// listenTCP opens a TCP listener inside the pod namespace.
func listenTCP(t *testing.T, pod string, addr string) net.Listener {
	t.Helper()
	var l net.Listener
	inNetns(t, pod, func() (err error) {
		l, err = net.Listen("tcp4", addr)
		return err
	})
	t.Cleanup(func() { l.Close() })
	return l
}

// dialTCP connects from inside the pod namespace.
func dialTCP(t *testing.T, pod string, addr string) (net.Conn, error) {
	t.Helper()
	var c net.Conn
	var derr error
	inNetns(t, pod, func() error {
		c, derr = net.DialTimeout("tcp4", addr, 3*time.Second)
		return nil
	})
	return c, derr
}

// udpSocket opens a UDP socket bound to addr inside the pod namespace.
func udpSocket(t *testing.T, pod string, addr string) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	inNetns(t, pod, func() error {
		ua, err := net.ResolveUDPAddr("udp4", addr)
		if err != nil {
			return err
		}
		c, err = net.ListenUDP("udp4", ua)
		return err
	})
	t.Cleanup(func() { c.Close() })
	return c
}

// isNotExist reports a netlink "no such" error.
func isGone(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, syscall.ENODEV) || errors.Is(err, syscall.ENOENT)
}

var _ invoke.Exec = NodeExec{}
