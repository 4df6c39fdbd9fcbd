package proxy

import (
	"fmt"
	"net"
	"net/netip"
	"sort"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Options are the node facts rendering needs.
type Options struct {
	ClusterCIDR netip.Prefix // pod addresses: ClusterIP clients outside it are masqueraded
}

// Registers: the 32-bit data registers start at 8.
const (
	r8, r9, r10, r11, r12, r13, r14 = 8, 9, 10, 11, 12, 13, 14
	rtnLocal                        = 2 // RTN_LOCAL, fib's address type for a local address
	ctStatusDNAT                    = 0x20
)

var (
	keyEntry    = []nftables.SetDatatype{nftables.TypeIPAddr, nftables.TypeInetProto, nftables.TypeInetService}
	keyNodePort = []nftables.SetDatatype{nftables.TypeInetProto, nftables.TypeInetService}
	keySlot     = []nftables.SetDatatype{nftables.TypeIPAddr, nftables.TypeInetProto, nftables.TypeInetService, nftables.TypeInteger}
	keyAffinity = []nftables.SetDatatype{nftables.TypeIPAddr, nftables.TypeIPAddr, nftables.TypeInetProto, nftables.TypeInetService}
	dataAddrPrt = []nftables.SetDatatype{nftables.TypeIPAddr, nftables.TypeInetService}
	dataVerdict = []nftables.SetDatatype{nftables.TypeVerdict}
)

// Render computes the proxy's whole table for a snapshot. It is pure: the same snapshot always
// gives the same ruleset.
func Render(snap Snapshot, opt Options) *Ruleset {
	opt = opt.normal()
	rs := EmptyRuleset(opt)
	picks := map[Pick]bool{}
	for i := range snap.Ports {
		pr := RenderPort(&snap.Ports[i])
		for _, e := range pr.Elements {
			rs.Set(e.Set).Elements[string(e.Element.Key)] = e.Element
		}
		for _, p := range pr.Picks {
			picks[p] = true
		}
	}
	var names []Pick
	for p := range picks {
		names = append(names, p)
	}
	sort.Slice(names, func(i, j int) bool { return names[i].Name() < names[j].Name() })
	for _, p := range names {
		rs.Chains = append(rs.Chains, PickChain(p, opt))
	}
	return rs
}

func (opt Options) normal() Options {
	if !opt.ClusterCIDR.IsValid() || !opt.ClusterCIDR.Addr().Is4() {
		// Without a known pod range no client counts as a pod: every ClusterIP client outside
		// the node is masqueraded, which is safe if not minimal.
		opt.ClusterCIDR = netip.MustParsePrefix("255.255.255.255/32")
	}
	return opt
}

// EmptyRuleset is the table with its fixed chains and empty sets.
func EmptyRuleset(opt Options) *Ruleset {
	opt = opt.normal()
	rs := &Ruleset{Chains: baseChains(opt)}
	newSet := func(name string, key, data []nftables.SetDatatype, dynamic bool) {
		rs.Sets = append(rs.Sets, &Set{Name: name, Key: key, Data: data, Dynamic: dynamic, Elements: map[string]Element{}})
	}
	newSet(SetServiceIPs, keyEntry, dataVerdict, false)
	newSet(SetServiceNodePorts, keyNodePort, dataVerdict, false)
	newSet(SetServiceIPsPods, keyEntry, dataVerdict, false)
	newSet(SetServiceNodePortsPod, keyNodePort, dataVerdict, false)
	newSet(SetEndpoints, keySlot, dataAddrPrt, false)
	newSet(SetNoEndpointIPs, keyEntry, dataVerdict, false)
	newSet(SetNoEndpointNodePorts, keyNodePort, dataVerdict, false)
	newSet(SetClusterIPs, []nftables.SetDatatype{nftables.TypeIPAddr}, nil, false)
	newSet(SetHairpin, []nftables.SetDatatype{nftables.TypeIPAddr, nftables.TypeIPAddr}, nil, false)
	newSet(SetAffinity, keyAffinity, dataAddrPrt, true)
	sort.Slice(rs.Sets, func(i, j int) bool { return rs.Sets[i].Name < rs.Sets[j].Name })
	return rs
}

// SetElement is an element of a named set.
type SetElement struct {
	Set     string
	Element Element
}

// PortRender is what one Service port contributes to the table: its elements and the pick
// chains they jump to. Elements of cluster-ips and hairpin may be shared with other ports.
type PortRender struct {
	Elements []SetElement
	Picks    []Pick
}

// RenderPort renders one Service port.
func RenderPort(sp *ServicePort) PortRender {
	var pr PortRender
	add := func(set string, e Element) { pr.Elements = append(pr.Elements, SetElement{set, e}) }
	// entry programs one way into a Service port: its dispatch element and its endpoints.
	entry := func(dispatch string, key []byte, addr netip.Addr, eps []Endpoint, p Pick) {
		p.N = len(eps)
		p.Affinity = sp.AffinitySeconds
		pr.Picks = append(pr.Picks, p)
		add(dispatch, Element{Key: key, Chain: p.Name()})
		port := portOf(key, p.NodePort)
		for i, e := range eps {
			add(SetEndpoints, Element{Key: endpointKey(addr, sp.Name.Protocol, port, p.View*ViewStride+uint32(i)), Data: endpointData(e)})
		}
	}
	noEndpoints := func(set string, key []byte, anyEndpoint bool) {
		if anyEndpoint {
			// Endpoints exist, but none this traffic may use (a Local policy on a node without
			// local endpoints): drop, as kube-proxy does; the client retries elsewhere.
			add(set, Element{Key: key, Verdict: expr.VerdictDrop})
		} else {
			add(set, Element{Key: key, Chain: ChainReject})
		}
	}
	zero := netip.AddrFrom4([4]byte{})
	proto := sp.Name.Protocol
	cluster := sp.ClusterEndpoints()
	local := sp.LocalEndpoints()
	add(SetClusterIPs, Element{Key: addrBytes(sp.ClusterIP)})
	for _, e := range local {
		add(SetHairpin, Element{Key: append(addrBytes(e.Addr), addrBytes(e.Addr)...)})
	}
	internal := cluster
	if sp.InternalLocal {
		internal = local
	}
	key := entryKey(sp.ClusterIP, proto, sp.Port)
	if len(internal) > 0 {
		entry(SetServiceIPs, key, sp.ClusterIP, internal, Pick{View: ViewInternal, Masq: MasqOffCluster})
	} else {
		noEndpoints(SetNoEndpointIPs, key, len(cluster) > 0)
	}
	if !sp.HasExternal() {
		return pr
	}
	ext := cluster
	masq := MasqAlways
	if sp.ExternalLocal {
		ext, masq = local, MasqNever
	}
	type way struct {
		dispatch, pods, noEp string
		key                  []byte
		addr                 netip.Addr
		np                   bool
	}
	var ways []way
	for _, ip := range sp.ExternalIPs {
		ways = append(ways, way{SetServiceIPs, SetServiceIPsPods, SetNoEndpointIPs, entryKey(ip, proto, sp.Port), ip, false})
	}
	if sp.NodePort != 0 {
		ways = append(ways, way{SetServiceNodePorts, SetServiceNodePortsPod, SetNoEndpointNodePorts, nodePortKey(proto, sp.NodePort), zero, true})
	}
	for _, w := range ways {
		if len(ext) > 0 {
			entry(w.dispatch, w.key, w.addr, ext, Pick{View: ViewExternal, NodePort: w.np, Masq: masq})
		} else {
			noEndpoints(w.noEp, w.key, len(cluster) > 0)
		}
		if sp.ExternalLocal && len(cluster) > 0 {
			// A pod reaching a Local Service's external address is not an external client:
			// it may use any endpoint, like kube-proxy's short-circuit for pod traffic.
			entry(w.pods, w.key, w.addr, cluster, Pick{View: ViewPods, NodePort: w.np, Masq: MasqAlways})
		}
	}
	return pr
}

// portOf reads the port back out of an entry or NodePort key.
func portOf(key []byte, nodePort bool) uint16 {
	off := 8
	if nodePort {
		off = 4
	}
	return uint16(key[off])<<8 | uint16(key[off+1])
}

// Expression helpers.

func ldSaddr(r uint32) expr.Any {
	return &expr.Payload{OperationType: expr.PayloadLoad, DestRegister: r, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4}
}
func ldDaddr(r uint32) expr.Any {
	return &expr.Payload{OperationType: expr.PayloadLoad, DestRegister: r, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4}
}
func ldDport(r uint32) expr.Any {
	return &expr.Payload{OperationType: expr.PayloadLoad, DestRegister: r, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2}
}
func ldL4proto(r uint32) expr.Any { return &expr.Meta{Key: expr.MetaKeyL4PROTO, Register: r} }

// inCIDR matches (or, with neq, does not match) the source address against a prefix.
func inCIDR(p netip.Prefix, neq bool) []expr.Any {
	mask := net.CIDRMask(p.Bits(), 32)
	op := expr.CmpOpEq
	if neq {
		op = expr.CmpOpNeq
	}
	return []expr.Any{
		ldSaddr(r8),
		&expr.Bitwise{SourceRegister: r8, DestRegister: r8, Len: 4, Mask: []byte(mask), Xor: []byte{0, 0, 0, 0}},
		&expr.Cmp{Op: op, Register: r8, Data: addrBytes(p.Masked().Addr())},
	}
}

func notLoopback() []expr.Any {
	return []expr.Any{
		ldDaddr(r8),
		&expr.Bitwise{SourceRegister: r8, DestRegister: r8, Len: 4, Mask: []byte{255, 0, 0, 0}, Xor: []byte{0, 0, 0, 0}},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: r8, Data: []byte{127, 0, 0, 0}},
	}
}

func fibLocal() []expr.Any {
	return []expr.Any{
		&expr.Fib{Register: r8, FlagDADDR: true, ResultADDRTYPE: true},
		&expr.Cmp{Op: expr.CmpOpEq, Register: r8, Data: hostU32(rtnLocal)},
	}
}

func ctStateNew() []expr.Any {
	return []expr.Any{
		&expr.Ct{Key: expr.CtKeySTATE, Register: r8},
		&expr.Bitwise{SourceRegister: r8, DestRegister: r8, Len: 4, Mask: hostU32(expr.CtStateBitNEW), Xor: hostU32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: r8, Data: hostU32(0)},
	}
}

func vmapEntry(set string) []expr.Any {
	return []expr.Any{ldDaddr(r8), ldL4proto(r9), ldDport(r10),
		&expr.Lookup{SourceRegister: r8, DestRegister: 0, IsDestRegSet: true, SetName: set}}
}

func vmapNodePort(set string) []expr.Any {
	return []expr.Any{ldL4proto(r8), ldDport(r9),
		&expr.Lookup{SourceRegister: r8, DestRegister: 0, IsDestRegSet: true, SetName: set}}
}

func markMasq() []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyMARK, Register: r9},
		&expr.Bitwise{SourceRegister: r9, DestRegister: r9, Len: 4, Mask: hostU32(^MasqueradeMark), Xor: hostU32(MasqueradeMark)},
		&expr.Meta{Key: expr.MetaKeyMARK, Register: r9, SourceRegister: true},
	}
}

func cat(parts ...[]expr.Any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func jump(chain string) expr.Any  { return &expr.Verdict{Kind: expr.VerdictJump, Chain: chain} }
func gotoC(chain string) expr.Any { return &expr.Verdict{Kind: expr.VerdictGoto, Chain: chain} }

func baseChains(opt Options) []*Chain {
	cidr := opt.ClusterCIDR.String()
	hook := func(t nftables.ChainType, h *nftables.ChainHook, prio int32) *Hook {
		return &Hook{Type: t, Hooknum: *h, Priority: prio}
	}
	noEpIPs := Rule{Text: "ip daddr . meta l4proto . th dport vmap @" + SetNoEndpointIPs,
		Exprs: vmapEntry(SetNoEndpointIPs)}
	noEpNPs := Rule{Text: "fib daddr type local meta l4proto . th dport vmap @" + SetNoEndpointNodePorts,
		Exprs: cat(fibLocal(), vmapNodePort(SetNoEndpointNodePorts))}
	unknownPort := Rule{Text: "ip daddr @" + SetClusterIPs + " goto " + ChainReject,
		Exprs: []expr.Any{ldDaddr(r8), &expr.Lookup{SourceRegister: r8, SetName: SetClusterIPs}, gotoC(ChainReject)}}
	// Only a connection's first packet can be refused: established traffic passes each filter
	// hook with one test.
	onNew := func(chain string) []Rule {
		return []Rule{{Text: "ct state new jump " + chain, Exprs: cat(ctStateNew(), []expr.Any{jump(chain)})}}
	}
	return []*Chain{
		{Name: "nat-prerouting", Hook: hook(nftables.ChainTypeNAT, nftables.ChainHookPrerouting, -100),
			Rules: []Rule{{Text: "jump services", Exprs: []expr.Any{jump("services")}}}},
		{Name: "nat-output", Hook: hook(nftables.ChainTypeNAT, nftables.ChainHookOutput, -100),
			Rules: []Rule{
				// The node's own traffic to a Local-policy external entry is not external: like
				// a pod's, it may use every endpoint, masqueraded (kube-proxy does the same).
				{Text: "ip daddr . meta l4proto . th dport vmap @" + SetServiceIPsPods, Exprs: vmapEntry(SetServiceIPsPods)},
				{Text: "fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @" + SetServiceNodePortsPod,
					Exprs: cat(fibLocal(), notLoopback(), vmapNodePort(SetServiceNodePortsPod))},
				{Text: "jump services", Exprs: []expr.Any{jump("services")}},
			}},
		{Name: "nat-postrouting", Hook: hook(nftables.ChainTypeNAT, nftables.ChainHookPostrouting, 100),
			Rules: []Rule{
				{Text: fmt.Sprintf("meta mark & %#x != 0 meta mark set meta mark & %#x masquerade", MasqueradeMark, ^MasqueradeMark),
					Exprs: []expr.Any{
						&expr.Meta{Key: expr.MetaKeyMARK, Register: r8},
						&expr.Bitwise{SourceRegister: r8, DestRegister: r9, Len: 4, Mask: hostU32(MasqueradeMark), Xor: hostU32(0)},
						&expr.Cmp{Op: expr.CmpOpNeq, Register: r9, Data: hostU32(0)},
						&expr.Bitwise{SourceRegister: r8, DestRegister: r8, Len: 4, Mask: hostU32(^MasqueradeMark), Xor: hostU32(0)},
						&expr.Meta{Key: expr.MetaKeyMARK, Register: r8, SourceRegister: true},
						&expr.Masq{},
					}},
				{Text: "ct status dnat ip saddr . ip daddr @" + SetHairpin + " masquerade",
					Exprs: []expr.Any{
						&expr.Ct{Key: expr.CtKeySTATUS, Register: r8},
						&expr.Bitwise{SourceRegister: r8, DestRegister: r8, Len: 4, Mask: hostU32(ctStatusDNAT), Xor: hostU32(0)},
						&expr.Cmp{Op: expr.CmpOpNeq, Register: r8, Data: hostU32(0)},
						ldSaddr(r8), ldDaddr(r9),
						&expr.Lookup{SourceRegister: r8, SetName: SetHairpin},
						&expr.Masq{},
					}},
			}},
		{Name: "filter-input", Hook: hook(nftables.ChainTypeFilter, nftables.ChainHookInput, 0), Rules: onNew("input-new")},
		{Name: "filter-forward", Hook: hook(nftables.ChainTypeFilter, nftables.ChainHookForward, 0), Rules: onNew("forward-new")},
		{Name: "filter-output", Hook: hook(nftables.ChainTypeFilter, nftables.ChainHookOutput, 0), Rules: onNew("output-new")},
		{Name: "input-new", Rules: []Rule{noEpNPs, noEpIPs}},
		{Name: "forward-new", Rules: []Rule{noEpIPs, unknownPort}},
		{Name: "output-new", Rules: []Rule{noEpNPs, noEpIPs, unknownPort}},
		{Name: ChainReject, Rules: []Rule{
			{Text: "meta l4proto tcp reject with tcp reset",
				Exprs: []expr.Any{ldL4proto(r8), &expr.Cmp{Op: expr.CmpOpEq, Register: r8, Data: []byte{ProtoTCP}},
					&expr.Reject{Type: unix.NFT_REJECT_TCP_RST}}},
			{Text: "reject with icmp port-unreachable",
				Exprs: []expr.Any{&expr.Reject{Type: unix.NFT_REJECT_ICMP_UNREACH, Code: 3 /* port unreachable */}}},
		}},
		{Name: "services", Rules: []Rule{
			{Text: "ip saddr " + cidr + " ip daddr . meta l4proto . th dport vmap @" + SetServiceIPsPods,
				Exprs: cat(inCIDR(opt.ClusterCIDR, false), vmapEntry(SetServiceIPsPods))},
			{Text: "ip daddr . meta l4proto . th dport vmap @" + SetServiceIPs, Exprs: vmapEntry(SetServiceIPs)},
			{Text: "fib daddr type local ip daddr != 127.0.0.0/8 ip saddr " + cidr + " meta l4proto . th dport vmap @" + SetServiceNodePortsPod,
				Exprs: cat(fibLocal(), notLoopback(), inCIDR(opt.ClusterCIDR, false), vmapNodePort(SetServiceNodePortsPod))},
			// NodePorts answer on every local address but loopback, as kube-proxy's nftables
			// mode does (127/8 would need route_localnet).
			{Text: "fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @" + SetServiceNodePorts,
				Exprs: cat(fibLocal(), notLoopback(), vmapNodePort(SetServiceNodePorts))},
		}},
	}
}

// PickChain chooses an endpoint for a packet whose entry matched: optionally marks it for
// masquerade, reuses a remembered ClientIP-affinity choice, or draws slot view*stride + random
// mod N and DNATs to the endpoint stored there.
func PickChain(p Pick, opt Options) *Chain {
	opt = opt.normal()
	c := &Chain{Name: p.Name()}
	switch p.Masq {
	case MasqOffCluster:
		c.Rules = append(c.Rules, Rule{Text: fmt.Sprintf("ip saddr != %s meta mark set meta mark | %#x", opt.ClusterCIDR, MasqueradeMark),
			Exprs: cat(inCIDR(opt.ClusterCIDR, true), markMasq())})
	case MasqAlways:
		c.Rules = append(c.Rules, Rule{Text: fmt.Sprintf("meta mark set meta mark | %#x", MasqueradeMark), Exprs: markMasq()})
	}
	entryAddr, entryText := ldDaddr(r9), "ip daddr"
	if p.NodePort {
		entryAddr, entryText = &expr.Immediate{Register: r9, Data: []byte{0, 0, 0, 0}}, "0.0.0.0"
	}
	dnat := &expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: r13, RegProtoMin: r14, Specified: true}
	timeout := time.Duration(p.Affinity) * time.Second
	update := &expr.Dynset{SrcRegKey: r8, SrcRegData: r13, SetName: SetAffinity, Operation: unix.NFT_DYNSET_OP_UPDATE, Timeout: timeout}
	affKey := "ip saddr . " + entryText + " . meta l4proto . th dport"
	if p.Affinity > 0 {
		c.Rules = append(c.Rules, Rule{
			Text: fmt.Sprintf("dnat to %s map @%s update @%s { %s timeout %ds }", affKey, SetAffinity, SetAffinity, affKey, p.Affinity),
			Exprs: []expr.Any{ldSaddr(r8), entryAddr, ldL4proto(r10), ldDport(r11),
				&expr.Lookup{SourceRegister: r8, DestRegister: r13, IsDestRegSet: true, SetName: SetAffinity},
				update, dnat},
		})
	}
	text := fmt.Sprintf("dnat to %s . meta l4proto . th dport . numgen random mod %d offset %d map @%s",
		entryText, p.N, p.View*ViewStride, SetEndpoints)
	exprs := []expr.Any{entryAddr, ldL4proto(r10), ldDport(r11),
		&expr.Numgen{Register: r12, Modulus: uint32(p.N), Type: unix.NFT_NG_RANDOM, Offset: p.View * ViewStride},
		&expr.Lookup{SourceRegister: r9, DestRegister: r13, IsDestRegSet: true, SetName: SetEndpoints}}
	if p.Affinity > 0 {
		text += fmt.Sprintf(" update @%s { %s timeout %ds }", SetAffinity, affKey, p.Affinity)
		exprs = append(exprs, ldSaddr(r8), update)
	}
	c.Rules = append(c.Rules, Rule{Text: text, Exprs: append(exprs, dnat)})
	return c
}
