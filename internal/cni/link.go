package cni

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"

	"github.com/vishvananda/netlink"
)

var (
	nodeOnce   sync.Once
	nodeHandle *netlink.Handle
)

// nodeNL is a netlink handle on the node (current) namespace with one
// persistent socket: the package-level netlink functions open a socket per
// request, which costs more than many of the requests themselves.
func nodeNL() *netlink.Handle {
	nodeOnce.Do(func() {
		h, err := netlink.NewHandle(syscall.NETLINK_ROUTE)
		if err != nil {
			h = &netlink.Handle{} // falls back to a socket per request
		}
		nodeHandle = h
	})
	return nodeHandle
}

// HostVethName is the node-side name of the veth of attachment (containerID,
// ifName): "pn" and 10 hex digits of a hash, so DEL and GC find it again
// without any state.
func HostVethName(containerID, ifName string) string {
	sum := sha256.Sum256([]byte(containerID + "\x00" + ifName))
	return "pn" + hex.EncodeToString(sum[:5])
}

// isHostVethName reports whether name has the form HostVethName produces.
func isHostVethName(name string) bool {
	if len(name) != 12 || name[:2] != "pn" {
		return false
	}
	for _, c := range name[2:] {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// stableMAC is a locally administered unicast MAC derived from an IPv4
// address (0a:58:a.b.c.d): a pod IP handed to a new pod keeps its MAC, so
// neighbours' ARP caches stay right, and the bridge's MAC does not follow
// its ports.
func stableMAC(ip net.IP) net.HardwareAddr {
	ip4 := ip.To4()
	return net.HardwareAddr{0x0a, 0x58, ip4[0], ip4[1], ip4[2], ip4[3]}
}

// bridgeState is what lookupBridge found.
type bridgeState struct {
	link  netlink.Link // nil: no link of that name
	ready bool         // a bridge, up, with the MTU, the MAC and the gateway address
}

// lookupBridge inspects the bridge in the current namespace without
// changing anything.
func lookupBridge(name string, mtu int, gw *net.IPNet) (bridgeState, error) {
	link, err := nodeNL().LinkByName(name)
	if isNotFound(err) {
		return bridgeState{}, nil
	}
	if err != nil {
		return bridgeState{}, fmt.Errorf("bridge %s: %w", name, err)
	}
	st := bridgeState{link: link}
	if _, ok := link.(*netlink.Bridge); !ok || link.Attrs().MTU != mtu || link.Attrs().Flags&net.FlagUp == 0 ||
		link.Attrs().HardwareAddr.String() != stableMAC(gw.IP).String() {
		return st, nil
	}
	addrs, err := nodeNL().AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return st, fmt.Errorf("bridge %s: list addresses: %w", name, err)
	}
	for _, a := range addrs {
		if a.IPNet.IP.Equal(gw.IP) && a.IPNet.Mask.String() == gw.Mask.String() {
			st.ready = true
		}
	}
	return st, nil
}

// ensureBridge makes the bridge in the current namespace exist, be up, have
// the MTU, a fixed MAC and gw/prefix on it, starting from what lookupBridge
// found. An existing bridge is adopted; a concurrent creator is tolerated.
//
// The MAC matters: a bridge whose address was never set takes the lowest MAC
// of its ports and changes it when that port goes, which leaves every pod
// with a stale neighbour entry for its gateway.
func ensureBridge(name string, mtu int, gw *net.IPNet, st bridgeState) (netlink.Link, error) {
	if st.ready {
		return st.link, nil
	}
	link := st.link
	if link == nil {
		attrs := netlink.NewLinkAttrs()
		attrs.Name = name
		attrs.HardwareAddr = stableMAC(gw.IP)
		attrs.Flags = net.FlagUp
		if err := nodeNL().LinkAdd(&netlink.Bridge{LinkAttrs: attrs}); err != nil && !errors.Is(err, syscall.EEXIST) {
			return nil, fmt.Errorf("bridge %s: create: %w", name, err)
		}
		var err error
		if link, err = nodeNL().LinkByName(name); err != nil {
			return nil, fmt.Errorf("bridge %s: %w", name, err)
		}
	}
	if _, ok := link.(*netlink.Bridge); !ok {
		return nil, fmt.Errorf("bridge %s: exists but is a %s device, not a bridge", name, link.Type())
	}
	// The MTU is set after creation: given at creation it would follow the
	// ports; set afterwards it sticks (the kernel treats it as the user's).
	if link.Attrs().MTU != mtu || st.link == nil {
		if err := nodeNL().LinkSetMTU(link, mtu); err != nil {
			return nil, fmt.Errorf("bridge %s: set MTU %d: %w", name, mtu, err)
		}
		link.Attrs().MTU = mtu
	}
	if mac := stableMAC(gw.IP); link.Attrs().HardwareAddr.String() != mac.String() {
		if err := nodeNL().LinkSetHardwareAddr(link, mac); err != nil {
			return nil, fmt.Errorf("bridge %s: set MAC %s: %w", name, mac, err)
		}
		link.Attrs().HardwareAddr = mac
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		if err := nodeNL().LinkSetUp(link); err != nil {
			return nil, fmt.Errorf("bridge %s: set up: %w", name, err)
		}
	}
	if err := nodeNL().AddrAdd(link, &netlink.Addr{IPNet: gw}); err != nil && !errors.Is(err, syscall.EEXIST) {
		return nil, fmt.Errorf("bridge %s: add gateway address %s: %w", name, gw, err)
	}
	return link, nil
}

func isNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf)
}

// deleteLink removes the named link in the current namespace; a missing one
// is not an error.
func deleteLink(name string) error {
	link, err := nodeNL().LinkByName(name)
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("find %s: %w", name, err)
	}
	if err := nodeNL().LinkDel(link); err != nil && !isNotFound(err) && !errors.Is(err, syscall.ENODEV) {
		return fmt.Errorf("delete %s: %w", name, err)
	}
	return nil
}
