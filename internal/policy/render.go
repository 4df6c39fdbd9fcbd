package policy

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"

	"github.com/podnet/podnet/internal/proxy"
)

// TableName is the nftables table (family ip) that enforces NetworkPolicy on a node.
const TableName = "podnet-policy"

// Names of the table's chains and sets.
const (
	ChainForward       = "forward"
	ChainEgressCheck   = "egress-check"
	ChainIngressCheck  = "ingress-check"
	ChainPending       = "pending"
	SetPods            = "pods"             // every local pod IP this table has been rendered for
	SetEgressIsolated  = "egress-isolated"  // local pod IPs selected by an egress policy
	SetIngressIsolated = "ingress-isolated" // local pod IPs selected by an ingress policy
	SetEgressAllow     = "egress-allow"     // saddr (local pod) . daddr range . proto range . dport range
	SetIngressAllow    = "ingress-allow"    // saddr range . daddr (local pod) . proto range . dport range
)

// NodeInfo is what rendering needs to know about the node.
type NodeInfo struct {
	// LocalPodIPs are the addresses of the pods on this node: egress is judged here for traffic
	// they send, ingress for traffic they receive.
	LocalPodIPs []netip.Addr
	// PodCIDRs are the node's pod address ranges. Forwarded traffic from or to an address in them
	// that is not one of LocalPodIPs is dropped: a pod the policy table has not been rendered
	// for yet (its IP came from IPAM before the agent saw the pod) gets no traffic at all, so it
	// is never open before its policies are enforced (fail closed).
	PodCIDRs []netip.Prefix
}

// NFLOG group and prefixes of the packets the table drops. The agent listens on LogGroup in the
// node's network namespace; the prefix says which check dropped the packet.
const (
	LogGroup         = 1042
	LogPrefixEgress  = "podnet-policy:egress"
	LogPrefixIngress = "podnet-policy:ingress"
	LogPrefixPending = "podnet-policy:pending"
	// logRate bounds the log to this many packets per second per check; drops are never limited.
	logRate  = 200
	logBurst = 50
)

// Ruleset is the whole desired content of the policy table. It reuses the proxy's chains and
// rules, but has its own sets: proxy.Set has no interval/concatenation flags and proxy.Element
// no KeyEnd, which the allow sets need (concatenated ranges, nft's pipapo set type).
type Ruleset struct {
	Chains []*proxy.Chain
	Sets   []*Set
}

// Set is a set, optionally of concatenated ranges.
type Set struct {
	Name     string
	Key      []nftables.SetDatatype
	Interval bool               // flags interval (with a multi-field Key: also concatenation)
	Elements map[string]Element // by string(Key); elements of an interval set never overlap
}

// Element is one set element. For an interval set, Key..KeyEnd is an inclusive range in every
// field (KeyEnd == Key for a single value); KeyEnd is nil for a plain set.
type Element struct {
	Key    []byte
	KeyEnd []byte
}

// Set returns the named set, or nil.
func (r *Ruleset) Set(name string) *Set {
	for _, s := range r.Sets {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// Chain returns the named chain, or nil.
func (r *Ruleset) Chain(name string) *proxy.Chain {
	for _, c := range r.Chains {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// Concatenation says whether the set's key has more than one field.
func (s *Set) Concatenation() bool { return len(s.Key) > 1 }

// SortedElements returns the elements ordered by key.
func (s *Set) SortedElements() []Element {
	out := make([]Element, 0, len(s.Elements))
	for _, e := range s.Elements {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return bytes.Compare(out[i].Key, out[j].Key) < 0 })
	return out
}

// FormatElement shows one element as nft would: each field a value or a lo-hi range.
func (s *Set) FormatElement(e Element) string {
	if e.KeyEnd == nil {
		return proxy.FormatKey(s.Key, e.Key)
	}
	var parts []string
	off := 0
	for _, t := range s.Key {
		n := (int(t.Bytes) + 3) &^ 3
		if off+n > len(e.Key) || off+n > len(e.KeyEnd) {
			parts = append(parts, fmt.Sprintf("?%x-%x", e.Key[off:], e.KeyEnd[off:]))
			break
		}
		ts := []nftables.SetDatatype{t}
		lo, hi := proxy.FormatKey(ts, e.Key[off:off+n]), proxy.FormatKey(ts, e.KeyEnd[off:off+n])
		if lo == hi {
			parts = append(parts, lo)
		} else {
			parts = append(parts, lo+"-"+hi)
		}
		off += n
	}
	return strings.Join(parts, " . ")
}

// Text shows the whole ruleset: chains with their rules' text and bytecode, then every set.
func (r *Ruleset) Text(bytecode bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "table ip %s {\n", TableName)
	for _, c := range r.Chains {
		b.WriteString(c.Text(bytecode))
	}
	for _, s := range r.Sets {
		var names []string
		for _, t := range s.Key {
			names = append(names, t.Name)
		}
		fmt.Fprintf(&b, "\tset %s {\n\t\ttype %s\n", s.Name, strings.Join(names, " . "))
		if s.Interval {
			b.WriteString("\t\tflags interval\n")
		}
		for _, e := range s.SortedElements() {
			fmt.Fprintf(&b, "\t\t%s\n", s.FormatElement(e))
		}
		b.WriteString("\t}\n")
	}
	b.WriteString("}\n")
	return b.String()
}

// Key layout of both allow sets: ip saddr . ip daddr . meta l4proto . th dport, every field
// padded to 4 bytes, network order.
var (
	keyAddr  = []nftables.SetDatatype{nftables.TypeIPAddr}
	keyAllow = []nftables.SetDatatype{nftables.TypeIPAddr, nftables.TypeIPAddr, nftables.TypeInetProto, nftables.TypeInetService}
)

const r8, r9, r10, r11 = 8, 9, 10, 11

func ldSaddr(r uint32) expr.Any {
	return &expr.Payload{OperationType: expr.PayloadLoad, DestRegister: r, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4}
}
func ldDaddr(r uint32) expr.Any {
	return &expr.Payload{OperationType: expr.PayloadLoad, DestRegister: r, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4}
}
func ldDport(r uint32) expr.Any {
	return &expr.Payload{OperationType: expr.PayloadLoad, DestRegister: r, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2}
}

func hostU32(v uint32) []byte { b := make([]byte, 4); binary.NativeEndian.PutUint32(b, v); return b }

// logDrop logs (rate-limited, to LogGroup) and drops: the end of a check chain.
func logDrop(prefix string) []proxy.Rule {
	return []proxy.Rule{
		{Text: fmt.Sprintf("limit rate %d/second burst %d packets log prefix %q group %d", logRate, logBurst, prefix, LogGroup),
			Exprs: []expr.Any{
				&expr.Limit{Type: expr.LimitTypePkts, Rate: logRate, Unit: expr.LimitTimeSecond, Burst: logBurst},
				&expr.Log{Key: 1<<unix.NFTA_LOG_GROUP | 1<<unix.NFTA_LOG_PREFIX, Group: LogGroup, Data: []byte(prefix)},
			}},
		{Text: "drop", Exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictDrop}}},
	}
}

// pendingRules send traffic from or to an address in a pod CIDR that is not a known local pod
// to the pending chain (which logs and drops).
func pendingRules(cidrs []netip.Prefix) []proxy.Rule {
	var out []proxy.Rule
	for _, field := range []string{"saddr", "daddr"} {
		ld := ldSaddr
		if field == "daddr" {
			ld = ldDaddr
		}
		for _, p := range cidrs {
			if p = p.Masked(); !p.Addr().Is4() {
				continue
			}
			mask := net4Mask(p.Bits())
			net := p.Addr().As4()
			out = append(out, proxy.Rule{Text: fmt.Sprintf("ip %s %s ip %s != @%s jump %s", field, p, field, SetPods, ChainPending),
				Exprs: []expr.Any{ld(r8),
					&expr.Bitwise{SourceRegister: r8, DestRegister: r8, Len: 4, Mask: mask, Xor: []byte{0, 0, 0, 0}},
					&expr.Cmp{Op: expr.CmpOpEq, Register: r8, Data: net[:]},
					ld(r8), &expr.Lookup{SourceRegister: r8, SetName: SetPods, Invert: true},
					&expr.Verdict{Kind: expr.VerdictJump, Chain: ChainPending}}})
		}
	}
	return out
}

func net4Mask(bits int) []byte {
	m := uint32(0)
	if bits > 0 {
		m = ^uint32(0) << (32 - bits)
	}
	b := make([]byte, 4)
	binary.BigEndian.PutUint32(b, m)
	return b
}

// EmptyRuleset is the table with its fixed chains and empty sets, for a node with these pod
// CIDRs. The chains never change while the CIDRs do not: a policy, pod or label change only adds
// and removes set elements.
func EmptyRuleset(podCIDRs []netip.Prefix) *Ruleset {
	accept := &expr.Verdict{Kind: expr.VerdictAccept}
	check := func(set, chain string, ld func(uint32) expr.Any, field string) proxy.Rule {
		return proxy.Rule{Text: fmt.Sprintf("ip %s @%s jump %s", field, set, chain),
			Exprs: []expr.Any{ld(r8), &expr.Lookup{SourceRegister: r8, SetName: set},
				&expr.Verdict{Kind: expr.VerdictJump, Chain: chain}}}
	}
	allow := func(set, prefix string) []proxy.Rule {
		return append([]proxy.Rule{
			{Text: "ip saddr . ip daddr . meta l4proto . th dport @" + set + " return",
				Exprs: []expr.Any{ldSaddr(r8), ldDaddr(r9), &expr.Meta{Key: expr.MetaKeyL4PROTO, Register: r10}, ldDport(r11),
					&expr.Lookup{SourceRegister: r8, SetName: set}, &expr.Verdict{Kind: expr.VerdictReturn}}},
		}, logDrop(prefix)...)
	}
	rs := &Ruleset{Chains: []*proxy.Chain{
		{Name: ChainForward, Hook: &proxy.Hook{Type: nftables.ChainTypeFilter, Hooknum: *nftables.ChainHookForward, Priority: 0},
			Rules: []proxy.Rule{
				// Replies (and ICMP errors) of connections that were allowed always pass: only a
				// connection's first packet is judged, with a fixed number of lookups.
				{Text: "ct state established,related accept", Exprs: []expr.Any{
					&expr.Ct{Key: expr.CtKeySTATE, Register: r8},
					&expr.Bitwise{SourceRegister: r8, DestRegister: r8, Len: 4,
						Mask: hostU32(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED), Xor: hostU32(0)},
					&expr.Cmp{Op: expr.CmpOpNeq, Register: r8, Data: hostU32(0)},
					accept}},
			}},
		{Name: ChainEgressCheck, Rules: allow(SetEgressAllow, LogPrefixEgress)},
		{Name: ChainIngressCheck, Rules: allow(SetIngressAllow, LogPrefixIngress)},
		{Name: ChainPending, Rules: logDrop(LogPrefixPending)},
	}}
	fwd := rs.Chains[0]
	// Fail closed: a pod not yet rendered for is cut off until it is.
	fwd.Rules = append(fwd.Rules, pendingRules(podCIDRs)...)
	// Egress is judged where the source pod lives, ingress where the destination does.
	fwd.Rules = append(fwd.Rules,
		check(SetEgressIsolated, ChainEgressCheck, ldSaddr, "saddr"),
		check(SetIngressIsolated, ChainIngressCheck, ldDaddr, "daddr"))
	for _, s := range []*Set{
		{Name: SetEgressAllow, Key: keyAllow, Interval: true},
		{Name: SetEgressIsolated, Key: keyAddr},
		{Name: SetIngressAllow, Key: keyAllow, Interval: true},
		{Name: SetIngressIsolated, Key: keyAddr},
		{Name: SetPods, Key: keyAddr},
	} {
		s.Elements = map[string]Element{}
		rs.Sets = append(rs.Sets, s)
	}
	return rs
}

// Render computes the policy table for one node. It is pure: the same model and node always
// give the same ruleset. Only IPv4 is rendered (the table is family ip).
//
// Every (local selected pod, allowed peer range, protocol range, port range) a rule allows
// becomes an element of the direction's allow set; the elements of one local pod are then
// normalised into disjoint maximal boxes, so duplicates across policies collapse, the result
// does not depend on policy order, and the kernel (which refuses an interval element whose
// start or end lies inside another) accepts them.
func Render(m *Model, node NodeInfo) *Ruleset {
	rs := EmptyRuleset(node.PodCIDRs)
	local := map[netip.Addr]bool{}
	for _, a := range node.LocalPodIPs {
		if a = a.Unmap(); a.Is4() {
			local[a] = true
			addIsolated(rs.Set(SetPods), a)
		}
	}
	for _, pod := range m.Pods {
		var in, eg []box
		inDone, egDone := false, false
		for _, ip := range pod.IPs {
			if !ip.Is4() || !local[ip] {
				continue
			}
			a := u32(ip)
			if len(pod.IngressPolicies) > 0 {
				if !inDone {
					in, inDone = normalise(m.ingressBoxes(pod)), true
				}
				addIsolated(rs.Set(SetIngressIsolated), ip)
				for _, b := range in {
					addAllow(rs.Set(SetIngressAllow), [2]uint32{b.peerLo, b.peerHi}, [2]uint32{a, a}, b)
				}
			}
			if len(pod.EgressPolicies) > 0 {
				if !egDone {
					eg, egDone = normalise(m.egressBoxes(pod)), true
				}
				addIsolated(rs.Set(SetEgressIsolated), ip)
				for _, b := range eg {
					addAllow(rs.Set(SetEgressAllow), [2]uint32{a, a}, [2]uint32{b.peerLo, b.peerHi}, b)
				}
			}
		}
	}
	return rs
}

func addIsolated(s *Set, ip netip.Addr) {
	k := ip.As4()
	s.Elements[string(k[:])] = Element{Key: k[:]}
}

func addAllow(s *Set, src, dst [2]uint32, b box) {
	enc := func(s, d uint32, proto uint8, port uint16) []byte {
		k := make([]byte, 16)
		binary.BigEndian.PutUint32(k[0:], s)
		binary.BigEndian.PutUint32(k[4:], d)
		k[8] = proto
		binary.BigEndian.PutUint16(k[12:], port)
		return k
	}
	e := Element{Key: enc(src[0], dst[0], b.protoLo, b.portLo), KeyEnd: enc(src[1], dst[1], b.protoHi, b.portHi)}
	s.Elements[string(e.Key)] = e
}

func u32(a netip.Addr) uint32 { x := a.As4(); return binary.BigEndian.Uint32(x[:]) }

// box is an allowed (peer range, protocol range, port range) towards or from one local pod.
type box struct {
	peerLo, peerHi   uint32
	protoLo, protoHi uint8
	portLo, portHi   uint16
}

// rect is a (protocol range, port range).
type rect struct {
	protoLo, protoHi uint8
	portLo, portHi   uint16
}

var allProtoPorts = rect{0, 255, 0, 65535}

// ProtocolNumber is the IP protocol number of a NetworkPolicy protocol (0 if unknown).
func ProtocolNumber(p corev1.Protocol) uint8 {
	switch p {
	case corev1.ProtocolTCP:
		return 6
	case corev1.ProtocolUDP:
		return 17
	case corev1.ProtocolSCTP:
		return 132
	}
	return 0
}

// portRect is the rectangle one ports entry allows towards dst (nil for a non-pod).
func portRect(pt *Port, dst *Pod) (rect, bool) {
	n := ProtocolNumber(pt.Protocol)
	if n == 0 {
		return rect{}, false
	}
	lo, hi, ok := pt.Resolve(dst)
	return rect{n, n, lo, hi}, ok
}

// peerRanges are the address ranges a peer covers (IPv4 only).
func peerRanges(p *Peer) [][2]uint32 {
	switch {
	case p.Invalid:
		return nil
	case p.IPBlock != nil:
		return blockRanges(p.IPBlock)
	}
	var out [][2]uint32
	for _, a := range p.IPs() {
		if a.Is4() {
			out = append(out, [2]uint32{u32(a), u32(a)})
		}
	}
	return out
}

// blockRanges is the CIDR minus its exceptions, as disjoint ranges.
func blockRanges(b *IPBlock) [][2]uint32 {
	if !b.CIDR.Addr().Is4() {
		return nil
	}
	out := [][2]uint32{prefixRange(b.CIDR)}
	for _, e := range b.Except {
		if !e.Addr().Is4() {
			continue
		}
		x := prefixRange(e)
		var next [][2]uint32
		for _, r := range out {
			if x[1] < r[0] || x[0] > r[1] {
				next = append(next, r)
				continue
			}
			if x[0] > r[0] {
				next = append(next, [2]uint32{r[0], x[0] - 1})
			}
			if x[1] < r[1] {
				next = append(next, [2]uint32{x[1] + 1, r[1]})
			}
		}
		out = next
	}
	return out
}

func prefixRange(p netip.Prefix) [2]uint32 {
	p = p.Masked()
	lo := u32(p.Addr())
	return [2]uint32{lo, lo | uint32((uint64(1)<<(32-p.Bits()))-1)}
}

func cross(peers [][2]uint32, rects []rect, out []box) []box {
	for _, p := range peers {
		for _, r := range rects {
			out = append(out, box{p[0], p[1], r.protoLo, r.protoHi, r.portLo, r.portHi})
		}
	}
	return out
}

// ingressBoxes: what the ingress rules selecting dst allow towards it (named ports resolve
// against dst itself).
func (m *Model) ingressBoxes(dst *Pod) []box {
	var out []box
	for _, pol := range dst.IngressPolicies {
		for _, r := range pol.IngressRules {
			out = cross(rulePeers(r), ruleRects(r, dst), out)
		}
	}
	return out
}

// egressBoxes: what the egress rules selecting src allow from it. Named ports resolve per peer
// pod, and never towards an ipBlock peer.
func (m *Model) egressBoxes(src *Pod) []box {
	var out []box
	for _, pol := range src.EgressPolicies {
		for _, r := range pol.EgressRules {
			out = cross(rulePeers(r), ruleRects(r, nil), out)
			var named []*Port
			for _, pt := range r.Ports {
				if pt.Name != "" && !pt.Invalid {
					named = append(named, pt)
				}
			}
			if len(named) == 0 {
				continue
			}
			var dsts []*Pod
			if r.AllPeers {
				dsts = m.Pods
			}
			for _, p := range r.Peers {
				if !p.Invalid && p.IPBlock == nil {
					dsts = append(dsts, p.Pods...)
				}
			}
			for _, d := range dsts {
				var rects []rect
				for _, pt := range named {
					if rc, ok := portRect(pt, d); ok {
						rects = append(rects, rc)
					}
				}
				var ips [][2]uint32
				for _, a := range d.IPs {
					if a.Is4() {
						ips = append(ips, [2]uint32{u32(a), u32(a)})
					}
				}
				out = cross(ips, rects, out)
			}
		}
	}
	return out
}

func rulePeers(r *Rule) [][2]uint32 {
	if r.AllPeers {
		return [][2]uint32{{0, ^uint32(0)}}
	}
	var out [][2]uint32
	for _, p := range r.Peers {
		out = append(out, peerRanges(p)...)
	}
	return out
}

// ruleRects are the non-named port entries of a rule (all of them with dst set). A rule without
// ports allows every protocol (ICMP included) and port.
func ruleRects(r *Rule, dst *Pod) []rect {
	if r.AllPorts {
		return []rect{allProtoPorts}
	}
	var out []rect
	for _, pt := range r.Ports {
		if pt.Name != "" && dst == nil {
			continue
		}
		if rc, ok := portRect(pt, dst); ok {
			out = append(out, rc)
		}
	}
	return out
}

// normalise turns any boxes into the canonical cover of their union: maximal peer ranges over
// which the allowed (protocol, port) region is constant, each split into maximal protocol
// ranges over which the allowed ports are constant, each split into disjoint port ranges.
func normalise(in []box) []box {
	type ev struct {
		at  uint64
		idx int
		add bool
	}
	var evs []ev
	for i, b := range in {
		evs = append(evs, ev{uint64(b.peerLo), i, true}, ev{uint64(b.peerHi) + 1, i, false})
	}
	sort.Slice(evs, func(i, j int) bool { return evs[i].at < evs[j].at })
	type seg struct {
		lo, hi uint32
		rects  []rect
	}
	var segs []seg
	active := map[int]bool{}
	for i := 0; i < len(evs); {
		at := evs[i].at
		for ; i < len(evs) && evs[i].at == at; i++ {
			if evs[i].add {
				active[evs[i].idx] = true
			} else {
				delete(active, evs[i].idx)
			}
		}
		if len(active) == 0 || i == len(evs) {
			continue
		}
		var rs []rect
		for idx := range active {
			b := in[idx]
			rs = append(rs, rect{b.protoLo, b.protoHi, b.portLo, b.portHi})
		}
		rs = normaliseRects(rs)
		lo, hi := uint32(at), uint32(evs[i].at-1)
		if n := len(segs); n > 0 && uint64(segs[n-1].hi)+1 == at && equalRects(segs[n-1].rects, rs) {
			segs[n-1].hi = hi
			continue
		}
		segs = append(segs, seg{lo, hi, rs})
	}
	var out []box
	for _, s := range segs {
		for _, r := range s.rects {
			out = append(out, box{s.lo, s.hi, r.protoLo, r.protoHi, r.portLo, r.portHi})
		}
	}
	return out
}

func normaliseRects(in []rect) []rect {
	var bounds []int
	for _, r := range in {
		bounds = append(bounds, int(r.protoLo), int(r.protoHi)+1)
	}
	sort.Ints(bounds)
	var out []rect
	var prev []([2]uint16)
	prevHi := -2
	for i := 0; i+1 < len(bounds); i++ {
		lo, next := bounds[i], bounds[i+1]
		if lo == next {
			continue
		}
		var ports [][2]uint16
		for _, r := range in {
			if int(r.protoLo) <= lo && int(r.protoHi) >= lo {
				ports = append(ports, [2]uint16{r.portLo, r.portHi})
			}
		}
		ports = mergeRanges(ports)
		if len(ports) == 0 {
			prev, prevHi = nil, -2
			continue
		}
		if prevHi == lo-1 && equalPorts(prev, ports) {
			for k := len(out) - len(ports); k < len(out); k++ {
				out[k].protoHi = uint8(next - 1)
			}
		} else {
			for _, p := range ports {
				out = append(out, rect{uint8(lo), uint8(next - 1), p[0], p[1]})
			}
		}
		prev, prevHi = ports, next-1
	}
	return out
}

func mergeRanges(in [][2]uint16) [][2]uint16 {
	sort.Slice(in, func(i, j int) bool { return in[i][0] < in[j][0] })
	var out [][2]uint16
	for _, r := range in {
		if n := len(out); n > 0 && uint32(r[0]) <= uint32(out[n-1][1])+1 {
			if r[1] > out[n-1][1] {
				out[n-1][1] = r[1]
			}
			continue
		}
		out = append(out, r)
	}
	return out
}

func equalPorts(a, b [][2]uint16) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func equalRects(a, b []rect) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
