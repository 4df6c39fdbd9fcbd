package routing

import (
	"fmt"
	"net"
)

// RouteSpec is one route podnet wants in the main routing table (always with protocol
// RouteProtocol).
type RouteSpec struct {
	Node   string     // remote node the route serves
	Dst    *net.IPNet // the remote pod CIDR
	Gw     net.IP     // next hop
	Dev    string     // output device
	OnLink bool       // next hop is on the link even though it is not in a connected subnet
}

// String renders the route the way `ip route` would show it.
func (r RouteSpec) String() string {
	s := fmt.Sprintf("%s via %s dev %s", r.Dst, r.Gw, r.Dev)
	if r.OnLink {
		s += " onlink"
	}
	return s + fmt.Sprintf(" proto %d", RouteProtocol)
}

// NeighborSpec is one permanent IPv4 neighbour entry podnet wants on its device.
type NeighborSpec struct {
	Node string
	IP   net.IP
	MAC  net.HardwareAddr
	Dev  string
}

// String renders the entry the way `ip neigh` would show it.
func (n NeighborSpec) String() string {
	return fmt.Sprintf("%s lladdr %s dev %s nud permanent", n.IP, n.MAC, n.Dev)
}

// FDBSpec is one permanent forwarding-database entry (self) podnet wants on its VXLAN device:
// frames for MAC are sent to the VTEP at Dst.
type FDBSpec struct {
	Node string
	MAC  net.HardwareAddr
	Dst  net.IP
	Dev  string
}

// String renders the entry the way `bridge fdb` would show it.
func (f FDBSpec) String() string {
	return fmt.Sprintf("%s dev %s dst %s self permanent", f.MAC, f.Dev, f.Dst)
}

// NodeProblem names a remote node a backend cannot route, and why.
type NodeProblem struct {
	Node   string
	Reason string
}

// DesiredState is everything a backend wants programmed for a set of remote nodes. It is the output
// of a pure function of the input, so it can be tested, printed and explained without a kernel.
type DesiredState struct {
	Routes    []RouteSpec
	Neighbors []NeighborSpec
	FDB       []FDBSpec
	// Unroutable lists remote nodes this backend cannot reach (host-gw: not on the underlay
	// subnet). Sync programs every other node and then reports these as an error.
	Unroutable []NodeProblem
	// Pending lists remote nodes skipped for now because they lack something they will publish
	// later (vxlan: the VTEP MAC annotation). Not an error.
	Pending []string
}

// DesiredHostGW computes host-gw's routes: for each remote, remotePodCIDR via remoteInternalIP
// dev underlay. underlaySubnets are the IPv4 subnets configured on the underlay link; a remote
// whose InternalIP lies in none of them is not directly reachable and is listed in Unroutable
// instead. The local node (by name) is skipped. The error is for invalid input only.
func DesiredHostGW(local Node, underlay string, underlaySubnets []*net.IPNet, remotes []Node) (DesiredState, error) {
	local, err := normalizeNode(local)
	if err != nil {
		return DesiredState{}, fmt.Errorf("local %w", err)
	}
	if underlay == "" {
		return DesiredState{}, fmt.Errorf("underlay link name is empty")
	}
	rs, err := validateRemotes(local, remotes)
	if err != nil {
		return DesiredState{}, err
	}
	var d DesiredState
	for _, r := range rs {
		if !inAny(underlaySubnets, r.InternalIP) {
			d.Unroutable = append(d.Unroutable, NodeProblem{Node: r.Name, Reason: fmt.Sprintf(
				"InternalIP %s is not on a subnet of underlay %s (%s); host-gw needs all nodes on one L2 segment",
				r.InternalIP, underlay, subnetList(underlaySubnets))})
			continue
		}
		d.Routes = append(d.Routes, RouteSpec{Node: r.Name, Dst: r.PodCIDR, Gw: r.InternalIP, Dev: underlay})
	}
	return d, nil
}

// DesiredVXLAN computes the vxlan backend's state on device dev: for each remote with a VTEP MAC,
// the route remotePodCIDR via remotePodCIDR.network dev dev onlink, the permanent neighbour
// network → VTEPMAC and the FDB entry VTEPMAC dst remoteInternalIP. Remotes without a MAC are
// listed in Pending. The local node (by name) is skipped. The error is for invalid input only.
func DesiredVXLAN(local Node, dev string, remotes []Node) (DesiredState, error) {
	local, err := normalizeNode(local)
	if err != nil {
		return DesiredState{}, fmt.Errorf("local %w", err)
	}
	if dev == "" {
		return DesiredState{}, fmt.Errorf("vxlan device name is empty")
	}
	rs, err := validateRemotes(local, remotes)
	if err != nil {
		return DesiredState{}, err
	}
	var d DesiredState
	seenMAC := map[string]string{}
	for _, r := range rs {
		if r.VTEPMAC == nil {
			d.Pending = append(d.Pending, r.Name)
			continue
		}
		if other, ok := seenMAC[string(r.VTEPMAC)]; ok {
			return DesiredState{}, fmt.Errorf("remote node %q: VTEPMAC %s is also node %q's", r.Name, r.VTEPMAC, other)
		}
		seenMAC[string(r.VTEPMAC)] = r.Name
		gw := r.PodCIDR.IP
		d.Routes = append(d.Routes, RouteSpec{Node: r.Name, Dst: r.PodCIDR, Gw: gw, Dev: dev, OnLink: true})
		d.Neighbors = append(d.Neighbors, NeighborSpec{Node: r.Name, IP: gw, MAC: r.VTEPMAC, Dev: dev})
		d.FDB = append(d.FDB, FDBSpec{Node: r.Name, MAC: r.VTEPMAC, Dst: r.InternalIP, Dev: dev})
	}
	return d, nil
}

func inAny(subnets []*net.IPNet, ip net.IP) bool {
	for _, s := range subnets {
		if s.Contains(ip) {
			return true
		}
	}
	return false
}

func subnetList(subnets []*net.IPNet) string {
	if len(subnets) == 0 {
		return "no IPv4 subnets"
	}
	s := ""
	for i, n := range subnets {
		if i > 0 {
			s += ", "
		}
		s += n.String()
	}
	return s
}
