// Package routing programs cross-node pod routing on a node: the routes (and, for overlay backends,
// the tunnel device, neighbours and forwarding entries) that carry traffic for other nodes' pod
// CIDRs. The node agent owns one Backend per node, bound to that node's network namespace through a
// *netlink.Handle; it calls Setup once, publishes the returned LocalInfo, and calls Sync with the
// current set of remote nodes whenever Node objects change.
//
// Every route podnet programs carries the protocol number RouteProtocol, so listing, adoption after a
// restart and cleanup only ever touch podnet's own routes. Sync is a diff: it lists what exists,
// computes what is wanted with a pure function (DesiredHostGW / DesiredVXLAN) and writes only the
// difference, so a converged node costs zero kernel writes.
package routing

import (
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"

	"github.com/vishvananda/netlink"
	corev1 "k8s.io/api/core/v1"
)

// RouteProtocol is the rtnetlink route protocol number (rtm_protocol) that marks every route podnet
// programs. It is podnet's own number: the kernel and routing daemons use the low values and the
// IANA-style names in /etc/iproute2/rt_protos (e.g. 2 kernel, 3 boot, 4 static, 186 bgp, 188 ospf),
// and 98 is not claimed by any of them. Cleanup and restart adoption select routes by this number
// only, so routes created by anyone else are never modified or deleted. `ip route show proto 98`
// lists them.
const RouteProtocol netlink.RouteProtocol = 98

// AnnotationVTEPMAC is the annotation on Node objects carrying the node's VXLAN VTEP MAC address
// (the hardware address of its pn-vxlan device), in the usual colon-separated form.
const AnnotationVTEPMAC = "podnet.io/vtep-mac"

// Backend kinds accepted by New.
const (
	// KindHostGW routes each remote pod CIDR via the remote node's underlay address.
	KindHostGW = "host-gw"
	// KindVXLAN encapsulates pod traffic in VXLAN between nodes (flannel-style, unicast FDB entries).
	KindVXLAN = "vxlan"
	// KindIPIP is reserved for an IP-in-IP backend. It is designed to sit behind the same Backend
	// interface (one "pn-ipip" device in collect-metadata mode, one route per remote pod CIDR via the
	// remote InternalIP with onlink, programmed by the same diff machinery as host-gw), but the kernel
	// podnet is developed on has no ipip device, so New returns an error for it.
	KindIPIP = "ipip"
)

// VXLANDevice is the name of the VXLAN device the vxlan backend creates on every node.
const VXLANDevice = "pn-vxlan"

// Defaults applied by New when Config leaves the field zero.
const (
	DefaultVNI  = 1
	DefaultPort = 8472
	// VXLANOverhead is the encapsulation overhead subtracted from the underlay MTU for the vxlan
	// device and the pods: outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14.
	VXLANOverhead = 50
)

// Node is what routing needs to know about one node.
type Node struct {
	// Name is the Kubernetes node name.
	Name string
	// PodCIDR is the node's IPv4 pod CIDR.
	PodCIDR *net.IPNet
	// InternalIP is the node's IPv4 underlay address.
	InternalIP net.IP
	// VTEPMAC is the MAC of the node's VXLAN device (vxlan only). Nil while the node has not
	// published it yet: vxlan skips such a node until it does.
	VTEPMAC net.HardwareAddr
}

// Config configures a Backend for the local node.
type Config struct {
	// Handle is a netlink handle bound to the local node's network namespace. Required.
	Handle *netlink.Handle
	// Underlay is the name of the underlay link in that namespace (e.g. "eth0"). The pod MTU and
	// the underlay subnets come from it. When empty, the link holding Local.InternalIP is used.
	Underlay string
	// Local is this node; PodCIDR and InternalIP are required. For vxlan, a non-nil VTEPMAC (the MAC
	// published before a reboot) is used as the MAC when the device has to be created.
	Local Node
	// VNI is the VXLAN network identifier (vxlan only); 0 means DefaultVNI.
	VNI int
	// Port is the VXLAN UDP destination port (vxlan only); 0 means DefaultPort.
	Port int
}

// LocalInfo is what Setup reports about the local node.
type LocalInfo struct {
	// MTU is the pod MTU this backend supports: host-gw = underlay MTU, vxlan = underlay MTU - 50.
	MTU int
	// VTEPMAC is the MAC of the local VXLAN device (vxlan only), to publish in the Node annotation
	// AnnotationVTEPMAC.
	VTEPMAC net.HardwareAddr
}

// Backend programs cross-node pod routing on one node. A Backend is safe for concurrent use, but
// the agent is expected to drive it from one reconcile loop.
type Backend interface {
	// Name returns the backend kind: "host-gw" or "vxlan".
	Name() string
	// Setup creates or adopts the backend's device(s). It is idempotent and never deletes and
	// recreates what is already right.
	Setup() (LocalInfo, error)
	// Sync makes the kernel match exactly the routing for remotes: wanted objects are added or
	// fixed, podnet-owned objects for nodes no longer present are removed, nothing else is touched.
	// The local node, if present in remotes, is ignored.
	Sync(remotes []Node) (SyncStats, error)
	// Teardown removes everything this backend created on the node.
	Teardown() error
}

// SyncStats counts the kernel writes one Sync did; all zero when the node was already converged.
type SyncStats struct{ Added, Updated, Removed int }

// Total returns the number of kernel writes.
func (s SyncStats) Total() int { return s.Added + s.Updated + s.Removed }

// String formats the counts for logs.
func (s SyncStats) String() string {
	return fmt.Sprintf("added=%d updated=%d removed=%d", s.Added, s.Updated, s.Removed)
}

// Kinds lists the backend kinds New can build.
func Kinds() []string { return []string{KindHostGW, KindVXLAN} }

// New returns the backend of the given kind for the local node described by cfg. It validates cfg
// but does not touch the kernel.
func New(kind string, cfg Config) (Backend, error) {
	switch kind {
	case KindHostGW, KindVXLAN:
	case KindIPIP:
		// Place for the IP-in-IP backend (see KindIPIP). Implement it here once the kernel
		// provides the ipip device; until then refuse clearly rather than half-work.
		return nil, fmt.Errorf("routing backend %q is not available: this kernel has no ipip tunnel device; use one of %s",
			kind, strings.Join(Kinds(), ", "))
	default:
		return nil, fmt.Errorf("unknown routing backend %q: valid kinds are %s", kind, strings.Join(Kinds(), ", "))
	}
	if cfg.Handle == nil {
		return nil, errors.New("routing config: Handle is required")
	}
	local, err := normalizeNode(cfg.Local)
	if err != nil {
		return nil, fmt.Errorf("routing config: Local: %w", err)
	}
	if cfg.Local.VTEPMAC != nil {
		if err := checkMAC(cfg.Local.VTEPMAC); err != nil {
			return nil, fmt.Errorf("routing config: Local.VTEPMAC: %w", err)
		}
	}
	cfg.Local = local
	switch kind {
	case KindHostGW:
		return &hostGW{cfg: cfg}, nil
	default:
		if cfg.VNI == 0 {
			cfg.VNI = DefaultVNI
		}
		if cfg.VNI < 1 || cfg.VNI > 1<<24-1 {
			return nil, fmt.Errorf("routing config: VNI %d out of range 1..16777215", cfg.VNI)
		}
		if cfg.Port == 0 {
			cfg.Port = DefaultPort
		}
		if cfg.Port < 1 || cfg.Port > 65535 {
			return nil, fmt.Errorf("routing config: Port %d out of range 1..65535", cfg.Port)
		}
		return &vxlan{cfg: cfg}, nil
	}
}

// ParseNode extracts routing's view of a Kubernetes Node: the first IPv4 CIDR of spec.podCIDR /
// spec.podCIDRs, the first IPv4 InternalIP of status.addresses, and the AnnotationVTEPMAC
// annotation (absent or empty → nil VTEPMAC).
func ParseNode(n *corev1.Node) (Node, error) {
	if n == nil {
		return Node{}, errors.New("node is nil")
	}
	if n.Name == "" {
		return Node{}, errors.New("node: metadata.name is empty")
	}
	out := Node{Name: n.Name}

	cidrs := []struct {
		field, value string
	}{}
	if n.Spec.PodCIDR != "" {
		cidrs = append(cidrs, struct{ field, value string }{"spec.podCIDR", n.Spec.PodCIDR})
	}
	for i, c := range n.Spec.PodCIDRs {
		cidrs = append(cidrs, struct{ field, value string }{fmt.Sprintf("spec.podCIDRs[%d]", i), c})
	}
	if len(cidrs) == 0 {
		return Node{}, fmt.Errorf("node %q: spec.podCIDR is empty (no pod CIDR allocated yet)", n.Name)
	}
	for _, c := range cidrs {
		_, ipn, err := net.ParseCIDR(c.value)
		if err != nil {
			return Node{}, fmt.Errorf("node %q: %s %q is not a valid CIDR", n.Name, c.field, c.value)
		}
		if ipn.IP.To4() != nil && out.PodCIDR == nil {
			out.PodCIDR = &net.IPNet{IP: ipn.IP.To4(), Mask: ipn.Mask}
		}
	}
	if out.PodCIDR == nil {
		return Node{}, fmt.Errorf("node %q: spec.podCIDR has no IPv4 CIDR", n.Name)
	}

	for i, a := range n.Status.Addresses {
		if a.Type != corev1.NodeInternalIP {
			continue
		}
		ip := net.ParseIP(a.Address)
		if ip == nil {
			return Node{}, fmt.Errorf("node %q: status.addresses[%d] InternalIP %q is not an IP address", n.Name, i, a.Address)
		}
		if ip4 := ip.To4(); ip4 != nil {
			out.InternalIP = ip4
			break
		}
	}
	if out.InternalIP == nil {
		return Node{}, fmt.Errorf("node %q: status.addresses has no IPv4 InternalIP", n.Name)
	}

	if s := n.Annotations[AnnotationVTEPMAC]; s != "" {
		mac, err := net.ParseMAC(s)
		if err == nil {
			err = checkMAC(mac)
		}
		if err != nil {
			return Node{}, fmt.Errorf("node %q: annotation %s %q is not a valid VTEP MAC: %v", n.Name, AnnotationVTEPMAC, s, err)
		}
		out.VTEPMAC = mac
	}
	return out, nil
}

// checkMAC accepts only 6-byte unicast, non-zero Ethernet addresses.
func checkMAC(mac net.HardwareAddr) error {
	if len(mac) != 6 {
		return fmt.Errorf("%s is not a 6-byte Ethernet address", mac)
	}
	if mac[0]&1 != 0 {
		return fmt.Errorf("%s is a multicast address", mac)
	}
	if string(mac) == "\x00\x00\x00\x00\x00\x00" {
		return errors.New("00:00:00:00:00:00 is not a usable address")
	}
	return nil
}

// normalizeNode checks the fields every backend needs (Name, IPv4 PodCIDR, IPv4 InternalIP) and
// returns a copy with PodCIDR reduced to its network address and IPs in 4-byte form.
func normalizeNode(n Node) (Node, error) {
	if n.Name == "" {
		return Node{}, errors.New("Name is empty")
	}
	if n.PodCIDR == nil {
		return Node{}, fmt.Errorf("node %q: PodCIDR is required", n.Name)
	}
	ip4 := n.PodCIDR.IP.To4()
	ones, bits := n.PodCIDR.Mask.Size()
	if ip4 == nil || bits != 32 {
		return Node{}, fmt.Errorf("node %q: PodCIDR %s must be an IPv4 CIDR", n.Name, n.PodCIDR)
	}
	mask := net.CIDRMask(ones, 32)
	out := n
	out.PodCIDR = &net.IPNet{IP: ip4.Mask(mask), Mask: mask}
	if n.InternalIP == nil {
		return Node{}, fmt.Errorf("node %q: InternalIP is required", n.Name)
	}
	if out.InternalIP = n.InternalIP.To4(); out.InternalIP == nil {
		return Node{}, fmt.Errorf("node %q: InternalIP %s must be IPv4", n.Name, n.InternalIP)
	}
	if out.InternalIP.IsUnspecified() {
		return Node{}, fmt.Errorf("node %q: InternalIP %s is unspecified", n.Name, n.InternalIP)
	}
	return out, nil
}

// validateRemotes normalizes remotes, drops the local node, and rejects bad input with an error
// naming the node and field: missing or non-IPv4 fields, duplicate names, a pod CIDR overlapping
// another node's, an InternalIP equal to another node's, an invalid VTEPMAC.
func validateRemotes(local Node, remotes []Node) ([]Node, error) {
	out := make([]Node, 0, len(remotes))
	byName := map[string]bool{}
	for i, r := range remotes {
		if r.Name == "" {
			return nil, fmt.Errorf("remotes[%d]: Name is empty", i)
		}
		if r.Name == local.Name {
			continue
		}
		if byName[r.Name] {
			return nil, fmt.Errorf("remote node %q: listed twice", r.Name)
		}
		byName[r.Name] = true
		n, err := normalizeNode(r)
		if err != nil {
			return nil, fmt.Errorf("remote %w", err)
		}
		if n.VTEPMAC != nil {
			if err := checkMAC(n.VTEPMAC); err != nil {
				return nil, fmt.Errorf("remote node %q: VTEPMAC: %w", n.Name, err)
			}
		}
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	all := append([]Node{local}, out...)
	for i := range all {
		for j := i + 1; j < len(all); j++ {
			a, b := all[i], all[j]
			if a.PodCIDR.Contains(b.PodCIDR.IP) || b.PodCIDR.Contains(a.PodCIDR.IP) {
				return nil, fmt.Errorf("remote node %q: PodCIDR %s overlaps node %q's PodCIDR %s", b.Name, b.PodCIDR, a.Name, a.PodCIDR)
			}
			if a.InternalIP.Equal(b.InternalIP) {
				return nil, fmt.Errorf("remote node %q: InternalIP %s is also node %q's", b.Name, b.InternalIP, a.Name)
			}
		}
	}
	return out, nil
}
