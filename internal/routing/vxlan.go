package routing

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"syscall"

	"github.com/vishvananda/netlink"
)

// vxlan is the flannel-style VXLAN backend: one device (VXLANDevice) with no multicast group and
// no learning; every remote node gets a route via its pod CIDR's network address (onlink), a
// permanent neighbour entry resolving that address to the remote VTEP MAC, and an FDB entry sending
// that MAC to the remote InternalIP.
type vxlan struct {
	mu  sync.Mutex
	cfg Config
	// mac is the device MAC seen by the last Setup/Sync, reused if the device must be recreated
	// so the published annotation stays valid.
	mac net.HardwareAddr
}

func (b *vxlan) Name() string { return KindVXLAN }

// in6AddrGenModeNone is IN6_ADDR_GEN_MODE_NONE from linux/if_link.h.
const in6AddrGenModeNone = 1

// Setup creates pn-vxlan or adopts the existing one, fixing only what differs. Its MAC survives
// agent restarts (adoption) and attribute fixes (recreated with the same MAC).
func (b *vxlan) Setup() (LocalInfo, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	u, err := resolveUnderlay(b.cfg.Handle, b.cfg.Underlay, b.cfg.Local.InternalIP, true)
	if err != nil {
		return LocalInfo{}, fmt.Errorf("vxlan setup: %w", err)
	}
	link, _, err := b.ensureDevice(u)
	if err != nil {
		return LocalInfo{}, fmt.Errorf("vxlan setup: %w", err)
	}
	return LocalInfo{MTU: link.Attrs().MTU, VTEPMAC: append(net.HardwareAddr(nil), link.Attrs().HardwareAddr...)}, nil
}

// vxlanMTU is the device and pod MTU for an underlay MTU.
func vxlanMTU(underlayMTU int) (int, error) {
	mtu := underlayMTU - VXLANOverhead
	if mtu < 576 {
		return 0, fmt.Errorf("underlay MTU %d leaves %d for VXLAN, below the IPv4 minimum of 576", underlayMTU, mtu)
	}
	return mtu, nil
}

// vxlanMismatch lists the attributes of an existing VXLAN device that differ from the wanted ones
// and that the kernel cannot change in place (so the device must be recreated).
func vxlanMismatch(have, want *netlink.Vxlan) []string {
	var diffs []string
	if have.VxlanId != want.VxlanId {
		diffs = append(diffs, fmt.Sprintf("vni %d≠%d", have.VxlanId, want.VxlanId))
	}
	if have.Port != want.Port {
		diffs = append(diffs, fmt.Sprintf("dstport %d≠%d", have.Port, want.Port))
	}
	if !have.SrcAddr.Equal(want.SrcAddr) {
		diffs = append(diffs, fmt.Sprintf("local %s≠%s", have.SrcAddr, want.SrcAddr))
	}
	if have.VtepDevIndex != want.VtepDevIndex {
		diffs = append(diffs, fmt.Sprintf("dev index %d≠%d", have.VtepDevIndex, want.VtepDevIndex))
	}
	if have.Learning != want.Learning {
		diffs = append(diffs, fmt.Sprintf("learning %v≠%v", have.Learning, want.Learning))
	}
	if have.Group != nil && !have.Group.IsUnspecified() {
		diffs = append(diffs, fmt.Sprintf("group %s (want none)", have.Group))
	}
	if have.FlowBased {
		diffs = append(diffs, "external (want VNI-bound device)")
	}
	return diffs
}

// ensureDevice makes pn-vxlan match the config and returns it with the number of kernel writes,
// split into creations and in-place fixes.
func (b *vxlan) ensureDevice(u underlay) (netlink.Link, SyncStats, error) {
	h := b.cfg.Handle
	var st SyncStats
	mtu, err := vxlanMTU(u.link.Attrs().MTU)
	if err != nil {
		return nil, st, err
	}
	want := &netlink.Vxlan{
		LinkAttrs:    netlink.LinkAttrs{Name: VXLANDevice, MTU: mtu},
		VxlanId:      b.cfg.VNI,
		VtepDevIndex: u.link.Attrs().Index,
		SrcAddr:      b.cfg.Local.InternalIP.To4(),
		Learning:     false,
		Port:         b.cfg.Port,
	}
	link, err := h.LinkByName(VXLANDevice)
	var nf netlink.LinkNotFoundError
	switch {
	case errors.As(err, &nf):
		link = nil
	case err != nil:
		return nil, st, fmt.Errorf("look up %s: %w", VXLANDevice, err)
	}
	if link != nil {
		recreate := ""
		if vx, ok := link.(*netlink.Vxlan); !ok {
			recreate = fmt.Sprintf("it is a %s device, not vxlan", link.Type())
		} else if d := vxlanMismatch(vx, want); len(d) > 0 {
			recreate = strings.Join(d, ", ")
			// Keep the MAC other nodes already know.
			b.mac = append(net.HardwareAddr(nil), vx.HardwareAddr...)
		}
		if recreate != "" {
			if err := h.LinkDel(link); err != nil {
				return nil, st, fmt.Errorf("delete %s to recreate it (%s): %w", VXLANDevice, recreate, err)
			}
			st.Removed++
			link = nil
		}
	}
	if link == nil {
		mac := b.mac
		if mac == nil {
			mac = b.cfg.Local.VTEPMAC
		}
		if mac != nil {
			want.HardwareAddr = mac
		}
		if err := h.LinkAdd(want); err != nil {
			return nil, st, fmt.Errorf("create %s (vni %d, dstport %d, local %s, dev %s): %w",
				VXLANDevice, want.VxlanId, want.Port, want.SrcAddr, u.link.Attrs().Name, err)
		}
		st.Added++
		if link, err = h.LinkByName(VXLANDevice); err != nil {
			return nil, st, fmt.Errorf("look up %s after creating it: %w", VXLANDevice, err)
		}
		// No IPv6 link-local address: the device carries IPv4 pod traffic only, and router
		// solicitations or MLD reports would only be dropped for lack of an FDB entry (and show up
		// as tx_dropped). Best effort, part of the creation: a kernel without IPv6 refuses it.
		_ = h.LinkSetIP6AddrGenMode(link, in6AddrGenModeNone)
	}
	if link.Attrs().MTU != mtu {
		if err := h.LinkSetMTU(link, mtu); err != nil {
			return nil, st, fmt.Errorf("set %s mtu %d: %w", VXLANDevice, mtu, err)
		}
		st.Updated++
	}
	// Address: the local pod CIDR's network address as a /32.
	wantAddr := &net.IPNet{IP: b.cfg.Local.PodCIDR.IP.To4(), Mask: net.CIDRMask(32, 32)}
	addrs, err := retryDump(func() ([]netlink.Addr, error) { return h.AddrList(link, netlink.FAMILY_V4) })
	if err != nil {
		return nil, st, fmt.Errorf("list addresses of %s: %w", VXLANDevice, err)
	}
	have := false
	for _, a := range addrs {
		if a.IPNet != nil && ipNetEqual(a.IPNet, wantAddr) {
			have = true
			continue
		}
		if err := h.AddrDel(link, &a); err != nil && !errors.Is(err, syscall.EADDRNOTAVAIL) {
			return nil, st, fmt.Errorf("delete stale address %s from %s: %w", a.IPNet, VXLANDevice, err)
		}
		st.Removed++
	}
	if !have {
		if err := h.AddrAdd(link, &netlink.Addr{IPNet: wantAddr}); err != nil {
			return nil, st, fmt.Errorf("add address %s to %s: %w", wantAddr, VXLANDevice, err)
		}
		st.Added++
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		if err := h.LinkSetUp(link); err != nil {
			return nil, st, fmt.Errorf("set %s up: %w", VXLANDevice, err)
		}
		st.Updated++
	}
	b.mac = append(net.HardwareAddr(nil), link.Attrs().HardwareAddr...)
	return link, st, nil
}

// Sync ensures the device, then makes its routes, neighbours and FDB entries match remotes
// exactly. Remotes without a published VTEP MAC are skipped until they publish one.
func (b *vxlan) Sync(remotes []Node) (SyncStats, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	h := b.cfg.Handle
	d, err := DesiredVXLAN(b.cfg.Local, VXLANDevice, remotes)
	if err != nil {
		return SyncStats{}, fmt.Errorf("vxlan sync: %w", err)
	}
	u, err := resolveUnderlay(h, b.cfg.Underlay, b.cfg.Local.InternalIP, false)
	if err != nil {
		return SyncStats{}, fmt.Errorf("vxlan sync: %w", err)
	}
	link, st, err := b.ensureDevice(u)
	if err != nil {
		return st, fmt.Errorf("vxlan sync: %w", err)
	}
	idx := link.Attrs().Index

	existingRoutes, err := listPodnetRoutes(h)
	if err != nil {
		return st, fmt.Errorf("vxlan sync: %w", err)
	}
	existingNeigh, err := retryDump(func() ([]netlink.Neigh, error) { return h.NeighList(idx, netlink.FAMILY_V4) })
	if err != nil {
		return st, fmt.Errorf("vxlan sync: list neighbours of %s: %w", VXLANDevice, err)
	}
	existingFDB, err := retryDump(func() ([]netlink.Neigh, error) { return h.NeighList(idx, syscall.AF_BRIDGE) })
	if err != nil {
		return st, fmt.Errorf("vxlan sync: list fdb of %s: %w", VXLANDevice, err)
	}

	var wantR []netlink.Route
	for _, r := range d.Routes {
		wantR = append(wantR, wantRoute(r, idx))
	}
	var wantN, wantF []netlink.Neigh
	for _, n := range d.Neighbors {
		wantN = append(wantN, wantNeigh(n, idx))
	}
	for _, f := range d.FDB {
		wantF = append(wantF, wantFDB(f, idx))
	}
	rp := planRoutes(existingRoutes, wantR)
	np := planNeighbors(existingNeigh, wantN)
	fp := planFDB(existingFDB, wantF)

	a := &applier{h: h, stats: st}
	// Withdraw stale routes first, then make the L2 entries right, then point routes at them, so
	// a route never leads to a missing neighbour or FDB entry.
	a.routes(routePlan{del: rp.del}, nil)
	a.neighs("fdb entry", fp.add, fp.update, fp.del)
	a.neighs("neighbour", np.add, np.update, np.del)
	a.routes(routePlan{add: rp.add, update: rp.update}, nodeIndex(d.Routes))
	if err := a.err(); err != nil {
		return a.stats, fmt.Errorf("vxlan sync: %w", err)
	}
	return a.stats, nil
}

// Teardown deletes pn-vxlan (its routes, neighbours and FDB entries go with it).
func (b *vxlan) Teardown() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	h := b.cfg.Handle
	link, err := h.LinkByName(VXLANDevice)
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("vxlan teardown: look up %s: %w", VXLANDevice, err)
	}
	if err := h.LinkDel(link); err != nil {
		return fmt.Errorf("vxlan teardown: delete %s: %w", VXLANDevice, err)
	}
	return nil
}
