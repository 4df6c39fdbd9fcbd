package lab

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Every namespace of a lab is named "<lab>.<something>": a lab name cannot contain a dot, so
// the prefix "<lab>." belongs to that lab alone and `lab down` removes exactly what it made.
const (
	underlayBridge = "ul0"
	netnsDir       = "/var/run/netns"
	etcNetnsDir    = "/etc/netns"
)

// NetnsPrefix is the prefix of every network namespace name of the lab.
func NetnsPrefix(lab string) string { return lab + "." }

// UnderlayNetns is the namespace holding the underlay switch.
func UnderlayNetns(lab string) string { return lab + ".underlay" }

// ExternalNetns is the namespace of the lab's external client: a host on the nodes' LAN, outside
// the cluster, that is also the LAN's router for LoadBalancer IPs and externalIPs.
func ExternalNetns(lab string) string { return lab + ".external" }

// ExternalAddress is the external client's underlay address: host .254 of the underlay range,
// above every node's (.10+i, i ≤ MaxNodes).
func ExternalAddress(underlay *net.IPNet) *net.IPNet {
	ip := make(net.IP, 4)
	copy(ip, underlay.IP.To4())
	ip[3] += 254
	return &net.IPNet{IP: ip, Mask: underlay.Mask}
}

// externalPort is the external client's port on the underlay bridge (node ports are n1, n2…).
const externalPort = "ext"

// NodeNetns is the namespace of one lab node.
func NodeNetns(lab, node string) string { return lab + "." + node }

// PodNetns is the namespace of one pod.
func PodNetns(lab, namespace, pod string) string {
	n := lab + ".pod." + namespace + "." + pod
	if len(n) > 200 {
		sum := sha256.Sum256([]byte(n))
		n = n[:180] + "-" + hex.EncodeToString(sum[:6])
	}
	return n
}

// NetnsPath is where a named namespace is bind-mounted.
func NetnsPath(name string) string { return filepath.Join(netnsDir, name) }

// NodeName is the name of the i-th node (1-based).
func NodeName(i int) string { return fmt.Sprintf("node-%d", i) }

// NodeAddress is the underlay address of the i-th node: host .10+i of the underlay range.
func NodeAddress(underlay *net.IPNet, i int) *net.IPNet {
	ip := make(net.IP, 4)
	copy(ip, underlay.IP.To4())
	ip[3] += byte(10 + i)
	return &net.IPNet{IP: ip, Mask: underlay.Mask}
}

func netnsExists(name string) bool {
	_, err := os.Stat(NetnsPath(name))
	return err == nil
}

// addNetns creates a named namespace (adopting an existing one) with lo up.
func addNetns(name string) error {
	if !netnsExists(name) {
		if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
			return fmt.Errorf("ip netns add %s: %v: %s", name, err, strings.TrimSpace(string(out)))
		}
	}
	return withHandle(name, func(h *netlink.Handle) error {
		lo, err := h.LinkByName("lo")
		if err != nil {
			return err
		}
		return h.LinkSetUp(lo)
	})
}

// delNetns removes a named namespace; a missing one is fine.
func delNetns(name string) error {
	if !netnsExists(name) {
		return nil
	}
	if out, err := exec.Command("ip", "netns", "delete", name).CombinedOutput(); err != nil {
		return fmt.Errorf("ip netns delete %s: %v: %s", name, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// withHandle runs fn with a netlink handle bound to the named namespace.
func withHandle(name string, fn func(*netlink.Handle) error) error {
	nsh, err := netns.GetFromName(name)
	if err != nil {
		return fmt.Errorf("netns %s: %w", name, err)
	}
	defer nsh.Close()
	h, err := netlink.NewHandleAt(nsh)
	if err != nil {
		return fmt.Errorf("netns %s: %w", name, err)
	}
	defer h.Close()
	return fn(h)
}

// buildUnderlay creates (or adopts) the underlay switch and every node namespace wired to it.
func buildUnderlay(cfg Config) error {
	ul := UnderlayNetns(cfg.Name)
	if err := addNetns(ul); err != nil {
		return err
	}
	var brIndex int
	err := withHandle(ul, func(h *netlink.Handle) error {
		br, err := h.LinkByName(underlayBridge)
		if err != nil {
			if err := h.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: underlayBridge}}); err != nil {
				return fmt.Errorf("underlay bridge: %w", err)
			}
			if br, err = h.LinkByName(underlayBridge); err != nil {
				return err
			}
		}
		brIndex = br.Attrs().Index
		return h.LinkSetUp(br)
	})
	if err != nil {
		return err
	}
	underlay := mustCIDR(cfg.UnderlayCIDR)
	for i := 1; i <= cfg.Nodes; i++ {
		if err := attachNode(cfg.Name, i, brIndex, NodeAddress(underlay, i)); err != nil {
			return fmt.Errorf("%s: %w", NodeName(i), err)
		}
	}
	if err := attachExternal(cfg.Name, brIndex, ExternalAddress(underlay)); err != nil {
		return fmt.Errorf("external client: %w", err)
	}
	return nil
}

// attachNode creates node i's namespace and its eth0, a veth whose other end is a port of the
// underlay bridge.
func attachNode(lab string, i, brIndex int, addr *net.IPNet) error {
	return attachToUnderlay(lab, NodeNetns(lab, NodeName(i)), fmt.Sprintf("n%d", i), brIndex, addr)
}

// externalSysctls make the external namespace a router whose multipath routes spread flows by
// their ports, as a LAN router in front of a cluster does.
var externalSysctls = map[string]string{
	"net/ipv4/ip_forward":                "1",
	"net/ipv4/fib_multipath_hash_policy": "1",
}

// attachExternal creates (or adopts) the external client's namespace on the underlay.
func attachExternal(lab string, brIndex int, addr *net.IPNet) error {
	name := ExternalNetns(lab)
	if err := attachToUnderlay(lab, name, externalPort, brIndex, addr); err != nil {
		return err
	}
	// /proc/sys/net belongs to the namespace of the thread that opens it.
	return ns.WithNetNSPath(NetnsPath(name), func(ns.NetNS) error {
		for k, v := range externalSysctls {
			if err := os.WriteFile("/proc/sys/"+k, []byte(v), 0o644); err != nil {
				return fmt.Errorf("sysctl %s=%s: %w", strings.ReplaceAll(k, "/", "."), v, err)
			}
		}
		return nil
	})
}

// attachToUnderlay creates (or adopts) a namespace whose eth0 is a veth with the given address,
// its other end the port of the underlay bridge.
func attachToUnderlay(lab, nsName, port string, brIndex int, addr *net.IPNet) error {
	if err := addNetns(nsName); err != nil {
		return err
	}
	nodeNs := nsName
	err := withHandle(UnderlayNetns(lab), func(h *netlink.Handle) error {
		if l, err := h.LinkByName(port); err == nil {
			return h.LinkSetUp(l)
		}
		target, err := netns.GetFromName(nodeNs)
		if err != nil {
			return err
		}
		defer target.Close()
		veth := &netlink.Veth{
			LinkAttrs:     netlink.LinkAttrs{Name: port, MasterIndex: brIndex},
			PeerName:      "eth0",
			PeerNamespace: netlink.NsFd(int(target)),
		}
		if err := h.LinkAdd(veth); err != nil {
			return fmt.Errorf("veth %s: %w", port, err)
		}
		l, err := h.LinkByName(port)
		if err != nil {
			return err
		}
		return h.LinkSetUp(l)
	})
	if err != nil {
		return err
	}
	return withHandle(nodeNs, func(h *netlink.Handle) error {
		eth, err := h.LinkByName("eth0")
		if err != nil {
			return err
		}
		if err := h.AddrReplace(eth, &netlink.Addr{IPNet: addr}); err != nil {
			return err
		}
		return h.LinkSetUp(eth)
	})
}

// labNetns lists every namespace whose name carries the lab's prefix.
func labNetns(lab string) []string {
	entries, _ := os.ReadDir(netnsDir)
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), NetnsPrefix(lab)) {
			out = append(out, e.Name())
		}
	}
	return out
}
