package cni

import (
	"fmt"
	"net"
	"os"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/vishvananda/netlink"

	"github.com/podnet/podnet/internal/ipam"
)

// Check implements CNI CHECK: the attachment must hold an IP, the pod
// interface must exist in the netns with that IP, the configured MTU and a
// default route via the gateway, the host veth must be up on the bridge, and
// the anti-spoof set must let it send from its IP. If prevResult is given,
// its address for the pod interface must be the allocated one.
func Check(args *skel.CmdArgs) error {
	conf, store, err := openStore(args.StdinData)
	if err != nil {
		return err
	}
	defer store.Close()

	ip, ok, err := store.Get(args.ContainerID, args.IfName)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("CHECK: no IP is allocated to container %s interface %s in %s", args.ContainerID, args.IfName, conf.DataDir)
	}
	want := &net.IPNet{IP: ip, Mask: conf.Subnet.Mask}
	gw := store.Gateway()
	if err := checkPrevResult(conf, args, want); err != nil {
		return err
	}

	pod, err := openPodNetns(args.Netns)
	if err != nil {
		return fmt.Errorf("CHECK: pod netns %q: %v", args.Netns, err)
	}
	defer pod.close()
	link, err := pod.nl.LinkByName(args.IfName)
	if err != nil {
		return fmt.Errorf("CHECK: pod interface %s: %v", args.IfName, err)
	}
	if link.Attrs().MTU != conf.MTU {
		return fmt.Errorf("CHECK: pod interface %s has MTU %d, want %d", args.IfName, link.Attrs().MTU, conf.MTU)
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		return fmt.Errorf("CHECK: pod interface %s is down", args.IfName)
	}
	addrs, err := pod.nl.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("CHECK: pod interface %s: list addresses: %v", args.IfName, err)
	}
	found := false
	for _, a := range addrs {
		if a.IPNet.String() == want.String() {
			found = true
		}
	}
	if !found {
		return fmt.Errorf("CHECK: pod interface %s does not have its address %s", args.IfName, want)
	}
	routes, err := pod.nl.RouteList(link, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("CHECK: pod interface %s: list routes: %v", args.IfName, err)
	}
	found = false
	for _, r := range routes {
		if (r.Dst == nil || r.Dst.String() == "0.0.0.0/0") && r.Gw.Equal(gw) {
			found = true
		}
	}
	if !found {
		return fmt.Errorf("CHECK: pod has no default route via gateway %s on %s", gw, args.IfName)
	}

	hostVeth := HostVethName(args.ContainerID, args.IfName)
	host, err := nodeNL().LinkByName(hostVeth)
	if err != nil {
		return fmt.Errorf("CHECK: host veth %s: %v", hostVeth, err)
	}
	if host.Attrs().ParentIndex != link.Attrs().Index {
		return fmt.Errorf("CHECK: host veth %s is not the peer of pod interface %s", hostVeth, args.IfName)
	}
	br, err := nodeNL().LinkByName(conf.Bridge)
	if err != nil {
		return fmt.Errorf("CHECK: bridge %s: %v", conf.Bridge, err)
	}
	if host.Attrs().MasterIndex != br.Attrs().Index {
		return fmt.Errorf("CHECK: host veth %s is not attached to bridge %s", hostVeth, conf.Bridge)
	}
	if host.Attrs().Flags&net.FlagUp == 0 {
		return fmt.Errorf("CHECK: host veth %s is down", hostVeth)
	}
	pi, err := nodeNL().LinkGetProtinfo(host)
	if err != nil {
		return fmt.Errorf("CHECK: host veth %s: bridge port flags: %v", hostVeth, err)
	}
	if pi.Hairpin != conf.Hairpin() {
		return fmt.Errorf("CHECK: host veth %s has hairpin %v, want %v", hostVeth, pi.Hairpin, conf.Hairpin())
	}
	as, err := newAntiSpoof()
	if err != nil {
		return err
	}
	defer as.close()
	allowed, err := as.has(hostVeth, ip)
	if err != nil {
		return fmt.Errorf("CHECK: %v", err)
	}
	if !allowed {
		return fmt.Errorf("CHECK: anti-spoof set %s of table %s lacks %s . %s", AntiSpoofSet, AntiSpoofTable, hostVeth, ip)
	}
	return nil
}

func checkPrevResult(conf *NetConf, args *skel.CmdArgs, want *net.IPNet) error {
	if conf.PrevResult == nil {
		return nil
	}
	prev, err := current.NewResultFromResult(conf.PrevResult)
	if err != nil {
		return types.NewError(types.ErrDecodingFailure, "prevResult: "+err.Error(), "")
	}
	for _, ipc := range prev.IPs {
		if ipc.Interface == nil || *ipc.Interface < 0 || *ipc.Interface >= len(prev.Interfaces) {
			continue
		}
		iface := prev.Interfaces[*ipc.Interface]
		if iface.Name == args.IfName && iface.Sandbox == args.Netns {
			if ipc.Address.String() != want.String() {
				return fmt.Errorf("CHECK: prevResult gives %s the address %s, but IPAM holds %s", args.IfName, ipc.Address.String(), want)
			}
			return nil
		}
	}
	return fmt.Errorf("CHECK: prevResult has no address for interface %s in %s", args.IfName, args.Netns)
}

// Status implements CNI STATUS (spec 1.1): error 50 (plugin not available)
// when the IPAM data directory is not writable or the podCIDR has no free
// address.
func Status(args *skel.CmdArgs) error {
	conf, err := ParseConfig(args.StdinData)
	if err != nil {
		return err
	}
	unavailable := func(format string, a ...any) error {
		return types.NewError(types.ErrPluginNotAvailable, fmt.Sprintf(format, a...), "")
	}
	store, err := ipam.Open(conf.DataDir, conf.Subnet)
	if err != nil {
		return unavailable("dataDir %s is not usable: %v", conf.DataDir, err)
	}
	defer store.Close()
	probe, err := os.CreateTemp(conf.DataDir, ".status-probe-")
	if err != nil {
		return unavailable("dataDir %s is not writable: %v", conf.DataDir, err)
	}
	probe.Close()
	os.Remove(probe.Name())
	free, err := store.Free()
	if err != nil {
		return unavailable("dataDir %s: %v", conf.DataDir, err)
	}
	if free == 0 {
		return unavailable("podCIDR %s has no free address: all %d pod addresses are allocated", conf.Subnet, store.Capacity())
	}
	return nil
}
