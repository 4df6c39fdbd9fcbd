package cni

import (
	"errors"
	"fmt"
	"net"
	"syscall"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/podnet/podnet/internal/ipam"
)

// podNetns is a handle on the pod's network namespace.
type podNetns struct {
	ns netns.NsHandle
	nl *netlink.Handle
}

func openPodNetns(path string) (*podNetns, error) {
	if path == "" {
		return nil, fmt.Errorf("CNI_NETNS: missing")
	}
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return nil, err
	}
	h, err := netlink.NewHandleAt(ns, syscall.NETLINK_ROUTE)
	if err != nil {
		ns.Close()
		return nil, fmt.Errorf("netlink in %s: %w", path, err)
	}
	return &podNetns{ns: ns, nl: h}, nil
}

func (p *podNetns) close() {
	p.nl.Close()
	p.ns.Close()
}

// Add implements CNI ADD: it takes an IP (durably, before changing anything
// in the kernel), ensures the bridge and the anti-spoofing table, creates the
// veth pair and configures the pod side, then prints the result. On failure
// it undoes what it did and releases the IP if it took it. An ADD for an
// attachment that is already in place returns its existing IP instead of
// taking a second one.
func Add(args *skel.CmdArgs) error {
	conf, store, err := openStore(args.StdinData)
	if err != nil {
		return err
	}
	defer store.Close()
	a := &attachment{
		conf:     conf,
		args:     args,
		store:    store,
		hostVeth: HostVethName(args.ContainerID, args.IfName),
	}
	result, err := a.add()
	if a.as != nil {
		a.as.close()
	}
	if a.pod != nil {
		a.pod.close()
	}
	if err != nil {
		return err
	}
	return types.PrintResult(result, conf.CNIVersion)
}

// attachment is one ADD in progress.
type attachment struct {
	conf     *NetConf
	args     *skel.CmdArgs
	store    *ipam.Store
	pod      *podNetns
	as       *antiSpoof
	hostVeth string

	ip      net.IP
	created bool // this ADD took the IP (so undo releases it)
	bridge  netlink.Link
	podLink netlink.Link
}

func (a *attachment) podAddr() *net.IPNet {
	return &net.IPNet{IP: a.ip, Mask: a.conf.Subnet.Mask}
}

func (a *attachment) gateway() *net.IPNet {
	return &net.IPNet{IP: a.store.Gateway(), Mask: a.conf.Subnet.Mask}
}

// nodeState is what ADD reads from the node before it changes anything.
type nodeState struct {
	bridge    bridgeState
	bridgeErr error
	nftReady  bool
}

// readNode inspects the bridge and the anti-spoof table; it only reads.
func (a *attachment) readNode() *nodeState {
	st := &nodeState{}
	st.bridge, st.bridgeErr = lookupBridge(a.conf.Bridge, a.conf.MTU, a.gateway())
	st.nftReady = a.as.ready()
	return st
}

// prepare opens the pod netns and the nftables connection and reads the
// node's state. It changes nothing, so it runs while the IP is allocated.
// It reports whether the pod already has an interface named args.IfName.
func (a *attachment) prepare() (st *nodeState, ifExists bool, err error) {
	if a.pod, err = openPodNetns(a.args.Netns); err != nil {
		return nil, false, types.NewError(types.ErrInvalidNetNS, fmt.Sprintf("pod netns %q: %v", a.args.Netns, err), "")
	}
	if cur, err := netns.Get(); err == nil {
		same := cur.Equal(a.pod.ns)
		cur.Close()
		if same {
			return nil, false, types.NewError(types.ErrInvalidNetNS, fmt.Sprintf("pod netns %q is the node's own namespace", a.args.Netns), "")
		}
	}
	if a.as, err = newAntiSpoof(); err != nil {
		return nil, false, err
	}
	_, lerr := a.pod.nl.LinkByName(a.args.IfName)
	return a.readNode(), lerr == nil, nil
}

func (a *attachment) add() (*current.Result, error) {
	type reservation struct {
		ip      net.IP
		created bool
		err     error
	}
	reserved := make(chan reservation, 1)
	go func() {
		ip, created, err := a.store.Reserve(a.args.ContainerID, a.args.IfName)
		reserved <- reservation{ip, created, err}
	}()
	st, ifExists, perr := a.prepare()
	r := <-reserved
	if r.err != nil {
		return nil, r.err
	}
	a.ip, a.created = r.ip, r.created
	if perr != nil {
		return nil, a.fail(perr)
	}
	if ifExists {
		if r.created || !a.inPlace() {
			return nil, a.fail(fmt.Errorf("interface %s already exists in pod netns %s", a.args.IfName, a.args.Netns))
		}
		// A repeated ADD of a working attachment: same IP, re-applied.
		if err := a.setupNode(st); err != nil {
			return nil, err
		}
		if err := a.configurePod(); err != nil {
			return nil, err
		}
		return a.result()
	}
	res, err := a.create(st)
	if err != nil {
		return nil, a.fail(err)
	}
	return res, nil
}

// fail undoes a failed ADD and returns err, annotated if cleanup failed too.
func (a *attachment) fail(err error) error {
	if uerr := a.undo(); uerr != nil {
		return fmt.Errorf("%w (cleanup also failed: %v)", err, uerr)
	}
	return err
}

// inPlace reports whether the host veth and the pod interface of this
// attachment exist and are each other's peer.
func (a *attachment) inPlace() bool {
	host, err := nodeNL().LinkByName(a.hostVeth)
	if err != nil {
		return false
	}
	podLink, err := a.pod.nl.LinkByName(a.args.IfName)
	if err != nil {
		return false
	}
	return host.Attrs().ParentIndex == podLink.Attrs().Index && podLink.Attrs().ParentIndex == host.Attrs().Index
}

// allowSource lets the host veth send from the pod IP. The table itself is
// only ever created under the IPAM lock.
func (a *attachment) allowSource(st *nodeState) error {
	if st.nftReady {
		return a.as.allow(a.hostVeth, a.ip, false)
	}
	return a.store.Locked(func() error { return a.as.allow(a.hostVeth, a.ip, true) })
}

func (a *attachment) ensureBridge(st *nodeState) error {
	if st.bridgeErr != nil {
		return st.bridgeErr
	}
	br, err := ensureBridge(a.conf.Bridge, a.conf.MTU, a.gateway(), st.bridge)
	a.bridge = br
	return err
}

// setupNode ensures the bridge and the anti-spoof element.
func (a *attachment) setupNode(st *nodeState) error {
	return errors.Join(a.ensureBridge(st), a.allowSource(st))
}

// create sets up a new attachment. The anti-spoof element goes in while the
// bridge, veth and pod side are set up; both are done before it returns.
func (a *attachment) create(st *nodeState) (*current.Result, error) {
	nft := make(chan error, 1)
	go func() { nft <- a.allowSource(st) }()
	res, err := a.createLinks(st)
	return res, errors.Join(err, <-nft)
}

func (a *attachment) createLinks(st *nodeState) (*current.Result, error) {
	if err := a.ensureBridge(st); err != nil {
		return nil, err
	}
	attrs := netlink.NewLinkAttrs()
	attrs.Name = a.hostVeth
	attrs.MTU = a.conf.MTU
	attrs.Flags = net.FlagUp
	attrs.MasterIndex = a.bridge.Attrs().Index
	veth := netlink.NewVeth(attrs)
	veth.PeerName = a.args.IfName
	veth.PeerMTU = uint32(a.conf.MTU)
	veth.PeerHardwareAddr = stableMAC(a.ip)
	veth.PeerNamespace = netlink.NsFd(int(a.pod.ns))
	// LinkAdd also enslaves the host side to the bridge.
	err := nodeNL().LinkAdd(veth)
	if errors.Is(err, syscall.EEXIST) {
		// A host veth of this name is a leftover of an earlier,
		// interrupted ADD of the same attachment: no pod uses it.
		if derr := deleteLink(a.hostVeth); derr != nil {
			return nil, fmt.Errorf("stale host veth: %w", derr)
		}
		err = nodeNL().LinkAdd(veth)
	}
	if err != nil {
		return nil, fmt.Errorf("create veth %s <-> %s: %w", a.hostVeth, a.args.IfName, err)
	}
	if err := nodeNL().LinkSetHairpin(veth, a.conf.Hairpin()); err != nil {
		return nil, fmt.Errorf("host veth %s: hairpin: %w", a.hostVeth, err)
	}
	if err := a.configurePod(); err != nil {
		return nil, err
	}
	return a.result()
}

// configurePod sets address, link state and default route in the pod netns.
// It is idempotent.
func (a *attachment) configurePod() error {
	h := a.pod.nl
	link, err := h.LinkByName(a.args.IfName)
	if err != nil {
		return fmt.Errorf("pod interface %s: %w", a.args.IfName, err)
	}
	a.podLink = link
	if err := h.AddrAdd(link, &netlink.Addr{IPNet: a.podAddr()}); err != nil && !errors.Is(err, syscall.EEXIST) {
		return fmt.Errorf("pod interface %s: add address %s: %w", a.args.IfName, a.podAddr(), err)
	}
	if err := h.LinkSetUp(link); err != nil {
		return fmt.Errorf("pod interface %s: set up: %w", a.args.IfName, err)
	}
	route := &netlink.Route{
		LinkIndex: link.Attrs().Index,
		Dst:       &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)},
		Gw:        a.store.Gateway(),
	}
	if err := h.RouteReplace(route); err != nil {
		return fmt.Errorf("pod interface %s: default route via %s: %w", a.args.IfName, route.Gw, err)
	}
	// Loopback is always index 1 in a network namespace.
	if err := h.LinkSetUp(&netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: 1, Name: "lo"}}); err != nil {
		return fmt.Errorf("pod loopback: set up: %w", err)
	}
	return nil
}

// undo removes what a failed ADD may have created and releases the IP if
// this ADD took it.
func (a *attachment) undo() error {
	var errs []error
	if a.as != nil {
		if err := a.store.Locked(func() error {
			return a.as.removeWhere(func(e sourceElement) bool { return e.IfName == a.hostVeth })
		}); err != nil {
			errs = append(errs, err)
		}
	}
	if err := deleteLink(a.hostVeth); err != nil {
		errs = append(errs, err)
	}
	if a.created {
		if _, err := a.store.Release(a.args.ContainerID, a.args.IfName); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// result builds the ADD result, appended to prevResult if there is one.
func (a *attachment) result() (*current.Result, error) {
	host, err := nodeNL().LinkByName(a.hostVeth)
	if err != nil {
		return nil, fmt.Errorf("host veth %s: %w", a.hostVeth, err)
	}
	res := &current.Result{CNIVersion: current.ImplementedSpecVersion}
	if a.conf.PrevResult != nil {
		prev, err := current.NewResultFromResult(a.conf.PrevResult)
		if err != nil {
			return nil, types.NewError(types.ErrDecodingFailure, "prevResult: "+err.Error(), "")
		}
		res = prev
	}
	base := len(res.Interfaces)
	gw := a.store.Gateway()
	res.Interfaces = append(res.Interfaces,
		&current.Interface{Name: a.conf.Bridge, Mac: a.bridge.Attrs().HardwareAddr.String()},
		&current.Interface{Name: a.hostVeth, Mac: host.Attrs().HardwareAddr.String(), Mtu: host.Attrs().MTU},
		&current.Interface{Name: a.args.IfName, Mac: a.podLink.Attrs().HardwareAddr.String(), Mtu: a.podLink.Attrs().MTU, Sandbox: a.args.Netns},
	)
	res.IPs = append(res.IPs, &current.IPConfig{
		Address:   *a.podAddr(),
		Gateway:   gw,
		Interface: current.Int(base + 2),
	})
	res.Routes = append(res.Routes, &types.Route{
		Dst: net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)},
		GW:  gw,
	})
	if len(a.conf.DNS.Nameservers) > 0 || a.conf.DNS.Domain != "" || len(a.conf.DNS.Search) > 0 || len(a.conf.DNS.Options) > 0 {
		res.DNS = a.conf.DNS
	}
	return res, nil
}
