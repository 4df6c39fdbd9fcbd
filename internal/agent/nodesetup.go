package agent

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/podnet/podnet/internal/routing"
)

// NodeRouteProtocol marks the routes node setup programs (the Service CIDR route). The routing
// backend owns routing.RouteProtocol and removes every route of that number it does not want, so
// node setup needs a number of its own.
const NodeRouteProtocol netlink.RouteProtocol = 97

// nodeSysctls are the per-namespace settings a node needs. A new namespace starts with
// ip_forward=0, so a node without this would not route between pods and other nodes.
var nodeSysctls = map[string]string{
	"net/ipv4/ip_forward": "1",
}

// setupNode prepares the node: sysctls, the routing backend's devices, the pod bridge with the
// gateway address, the Service CIDR route and the CNI configuration. Every step adopts what is
// already right and writes only what differs.
func (a *Agent) setupNode(ctx context.Context) error {
	if err := a.setSysctls(); err != nil {
		return err
	}
	b, err := routing.New(a.cfg.Backend, routing.Config{Handle: a.nl, Underlay: a.cfg.Underlay, Local: a.local})
	if err != nil {
		return err
	}
	a.backend = b
	info, err := b.Setup()
	if err != nil {
		return fmt.Errorf("%s backend: %w", b.Name(), err)
	}
	a.mu.Lock()
	a.info = info
	a.mu.Unlock()
	br, err := a.ensureBridge()
	if err != nil {
		return fmt.Errorf("bridge %s: %w", a.cfg.Bridge, err)
	}
	if a.cfg.ServiceCIDR != nil {
		if err := a.ensureServiceRoute(br); err != nil {
			return fmt.Errorf("service CIDR route: %w", err)
		}
	}
	if a.cfg.CNIConfDir != "" {
		data, err := a.conflist(ctx)
		if err != nil {
			return err
		}
		if err := writeFileAtomic(filepath.Join(a.cfg.CNIConfDir, ConflistName), data); err != nil {
			return fmt.Errorf("write CNI config: %w", err)
		}
	}
	return nil
}

func (a *Agent) setSysctls() error {
	apply := func() error {
		for k, v := range nodeSysctls {
			p := "/proc/sys/" + k
			cur, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			if string(bytes.TrimSpace(cur)) == v {
				continue
			}
			if err := os.WriteFile(p, []byte(v), 0o644); err != nil {
				return fmt.Errorf("sysctl %s=%s: %w", k, v, err)
			}
			a.writes.Add(1)
		}
		return nil
	}
	if a.cfg.NetNS == "" {
		return apply()
	}
	// /proc/sys/net is per network namespace of the thread that opens it: do it on a locked
	// thread that enters the node's namespace only for these writes.
	return ns.WithNetNSPath(a.cfg.NetNS, func(ns.NetNS) error { return apply() })
}

// gateway is the pod bridge's address: the first host address of the node's podCIDR.
func gateway(podCIDR *net.IPNet) *net.IPNet {
	ip := make(net.IP, 4)
	copy(ip, podCIDR.IP.To4())
	ip[3]++
	return &net.IPNet{IP: ip, Mask: podCIDR.Mask}
}

func (a *Agent) ensureBridge() (netlink.Link, error) {
	link, err := a.nl.LinkByName(a.cfg.Bridge)
	if _, notFound := err.(netlink.LinkNotFoundError); notFound {
		// A fixed MAC (0a:58 + gateway IP, as podnet-cni uses): a bridge without one takes the
		// lowest MAC of its ports and changes it as pods come and go.
		gw := gateway(a.local.PodCIDR).IP.To4()
		mac := net.HardwareAddr{0x0a, 0x58, gw[0], gw[1], gw[2], gw[3]}
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: a.cfg.Bridge, HardwareAddr: mac}}
		if err := a.nl.LinkAdd(br); err != nil && !os.IsExist(err) {
			return nil, err
		}
		a.writes.Add(1)
		link, err = a.nl.LinkByName(a.cfg.Bridge)
		// The MTU is set after creation, not in it: only a change marks it as chosen by the
		// user, and otherwise the bridge resets it to 1500 whenever its last port leaves.
	}
	if err != nil {
		return nil, err
	}
	if _, ok := link.(*netlink.Bridge); !ok {
		return nil, fmt.Errorf("%s exists but is a %s, not a bridge", a.cfg.Bridge, link.Type())
	}
	if link.Attrs().MTU != a.info.MTU {
		if err := a.nl.LinkSetMTU(link, a.info.MTU); err != nil {
			return nil, err
		}
		a.writes.Add(1)
	}
	gw := gateway(a.local.PodCIDR)
	addrs, err := a.nl.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return nil, err
	}
	have := false
	for _, ad := range addrs {
		have = have || (ad.IP.Equal(gw.IP) && ad.Mask.String() == gw.Mask.String())
	}
	if !have {
		if err := a.nl.AddrAdd(link, &netlink.Addr{IPNet: gw}); err != nil && !os.IsExist(err) {
			return nil, err
		}
		a.writes.Add(1)
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		if err := a.nl.LinkSetUp(link); err != nil {
			return nil, err
		}
		a.writes.Add(1)
	}
	return link, nil
}

func (a *Agent) ensureServiceRoute(br netlink.Link) error {
	want := &netlink.Route{
		LinkIndex: br.Attrs().Index,
		Dst:       a.cfg.ServiceCIDR,
		Scope:     netlink.SCOPE_LINK,
		Protocol:  NodeRouteProtocol,
		Src:       gateway(a.local.PodCIDR).IP,
		Table:     unix.RT_TABLE_MAIN,
	}
	routes, err := a.nl.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Dst: a.cfg.ServiceCIDR, Table: unix.RT_TABLE_MAIN},
		netlink.RT_FILTER_DST|netlink.RT_FILTER_TABLE)
	if err != nil {
		return err
	}
	for _, r := range routes {
		if r.LinkIndex == want.LinkIndex && r.Protocol == want.Protocol && r.Src.Equal(want.Src) && r.Scope == want.Scope {
			return nil
		}
	}
	if err := a.nl.RouteReplace(want); err != nil {
		return err
	}
	a.writes.Add(1)
	return nil
}
