package routing

import (
	"errors"
	"fmt"
	"net"
	"sync"

	"github.com/vishvananda/netlink"
)

// hostGW routes every remote pod CIDR via the remote node's underlay address. It creates no
// device; it needs all nodes on one L2 segment.
type hostGW struct {
	mu  sync.Mutex
	cfg Config
}

func (b *hostGW) Name() string { return KindHostGW }

// Setup checks the underlay and reports its MTU; host-gw has no device to create.
func (b *hostGW) Setup() (LocalInfo, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	u, err := resolveUnderlay(b.cfg.Handle, b.cfg.Underlay, b.cfg.Local.InternalIP, true)
	if err != nil {
		return LocalInfo{}, fmt.Errorf("host-gw setup: %w", err)
	}
	return LocalInfo{MTU: u.link.Attrs().MTU}, nil
}

// Sync makes the podnet routes in the main table exactly one route per routable remote. Remotes
// not on the underlay subnet are reported in the error after every other node is programmed.
func (b *hostGW) Sync(remotes []Node) (SyncStats, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	h := b.cfg.Handle
	u, err := resolveUnderlay(h, b.cfg.Underlay, b.cfg.Local.InternalIP, false)
	if err != nil {
		return SyncStats{}, fmt.Errorf("host-gw sync: %w", err)
	}
	d, err := DesiredHostGW(b.cfg.Local, u.link.Attrs().Name, u.subnets, remotes)
	if err != nil {
		return SyncStats{}, fmt.Errorf("host-gw sync: %w", err)
	}
	existing, err := listPodnetRoutes(h)
	if err != nil {
		return SyncStats{}, fmt.Errorf("host-gw sync: %w", err)
	}
	want := make([]netlink.Route, 0, len(d.Routes))
	for _, r := range d.Routes {
		want = append(want, wantRoute(r, u.link.Attrs().Index))
	}
	a := &applier{h: h}
	a.routes(planRoutes(existing, want), nodeIndex(d.Routes))
	err = errors.Join(a.err(), unroutableError(KindHostGW, d.Unroutable))
	if err != nil {
		err = fmt.Errorf("host-gw sync: %w", err)
	}
	return a.stats, err
}

// Teardown deletes every podnet route through the underlay link.
func (b *hostGW) Teardown() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	h := b.cfg.Handle
	u, err := resolveUnderlay(h, b.cfg.Underlay, b.cfg.Local.InternalIP, false)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil // the routes went with the link
		}
		return fmt.Errorf("host-gw teardown: %w", err)
	}
	existing, err := listPodnetRoutes(h)
	if err != nil {
		return fmt.Errorf("host-gw teardown: %w", err)
	}
	var del []netlink.Route
	for _, r := range existing {
		if r.LinkIndex == u.link.Attrs().Index {
			del = append(del, r)
		}
	}
	a := &applier{h: h}
	a.routes(routePlan{del: del}, nil)
	if err := a.err(); err != nil {
		return fmt.Errorf("host-gw teardown: %w", err)
	}
	return nil
}

// underlay is the resolved underlay link and its IPv4 subnets.
type underlay struct {
	link    netlink.Link
	subnets []*net.IPNet
}

// resolveUnderlay finds the underlay link (by name, or when name is empty, the link holding
// internalIP) and its IPv4 subnets. With requireIP it also checks that internalIP is one of the
// link's addresses.
func resolveUnderlay(h *netlink.Handle, name string, internalIP net.IP, requireIP bool) (underlay, error) {
	var link netlink.Link
	var err error
	if name != "" {
		link, err = h.LinkByName(name)
		if err != nil {
			return underlay{}, fmt.Errorf("underlay link %q: %w", name, err)
		}
	} else {
		addrs, err := retryDump(func() ([]netlink.Addr, error) { return h.AddrList(nil, netlink.FAMILY_V4) })
		if err != nil {
			return underlay{}, fmt.Errorf("list addresses: %w", err)
		}
		for _, a := range addrs {
			if a.IP.Equal(internalIP) {
				link, err = h.LinkByIndex(a.LinkIndex)
				if err != nil {
					return underlay{}, fmt.Errorf("underlay link of %s: %w", internalIP, err)
				}
				break
			}
		}
		if link == nil {
			return underlay{}, fmt.Errorf("no link holds the local InternalIP %s (set Config.Underlay)", internalIP)
		}
	}
	addrs, err := retryDump(func() ([]netlink.Addr, error) { return h.AddrList(link, netlink.FAMILY_V4) })
	if err != nil {
		return underlay{}, fmt.Errorf("addresses of underlay %q: %w", link.Attrs().Name, err)
	}
	u := underlay{link: link}
	hasIP := false
	for _, a := range addrs {
		if a.IPNet == nil || a.IP.To4() == nil {
			continue
		}
		if a.IP.Equal(internalIP) {
			hasIP = true
		}
		u.subnets = append(u.subnets, &net.IPNet{IP: a.IP.To4().Mask(a.Mask), Mask: a.Mask})
	}
	if requireIP && !hasIP {
		return underlay{}, fmt.Errorf("local InternalIP %s is not an address of underlay %q", internalIP, link.Attrs().Name)
	}
	return u, nil
}
