package proxy

import (
	"math"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Unit tests of the walker itself, on small hand-written rulesets. The walks over rendered
// Services are in render_test.go.

var walkTestNode = NodeInfo{LocalAddrs: []netip.Addr{netip.MustParseAddr("192.168.0.1")}}

func wBase(name string, t nftables.ChainType, h *nftables.ChainHook, prio int32, rules ...Rule) *Chain {
	return &Chain{Name: name, Hook: &Hook{Type: t, Hooknum: *h, Priority: prio}, Rules: rules}
}

func wRule(exprs ...expr.Any) Rule { return Rule{Text: "test rule", Exprs: exprs} }

// wSetMark is a rule that sets the mark to v (to see in an outcome which rules ran).
func wSetMark(v uint32, more ...expr.Any) Rule {
	return wRule(append([]expr.Any{&expr.Immediate{Register: 8, Data: hostU32(v)},
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 8, SourceRegister: true}}, more...)...)
}

// wOrMark ors v into the mark.
func wOrMark(v uint32, more ...expr.Any) Rule {
	return wRule(append([]expr.Any{&expr.Meta{Key: expr.MetaKeyMARK, Register: 8},
		&expr.Bitwise{SourceRegister: 8, DestRegister: 8, Len: 4, Mask: hostU32(^v), Xor: hostU32(v)},
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 8, SourceRegister: true}}, more...)...)
}

func wPkt(src, dst string, proto uint8, dport uint16) Packet {
	return Packet{Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), Proto: proto, SrcPort: 40000, DstPort: dport}
}

func wWalk(t *testing.T, rs *Ruleset, p Packet) []Outcome {
	t.Helper()
	outs, err := Walk(rs, walkTestNode, p)
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, o := range outs {
		sum += o.Probability
	}
	if math.Abs(sum-1) > 1e-9 {
		t.Fatalf("probabilities add up to %v", sum)
	}
	return outs
}

func wOne(t *testing.T, rs *Ruleset, p Packet) Outcome {
	t.Helper()
	outs := wWalk(t, rs, p)
	if len(outs) != 1 {
		t.Fatalf("%d outcomes, want 1", len(outs))
	}
	return outs[0]
}

func TestWalkRegisters(t *testing.T) {
	// meta l4proto stores one byte and zeroes the rest of its register; a 2-byte payload load
	// likewise; the legacy 16-byte register 1 covers registers 8..11.
	rs := &Ruleset{Chains: []*Chain{wBase("in", nftables.ChainTypeFilter, nftables.ChainHookPrerouting, 0,
		wRule(&expr.Immediate{Register: 9, Data: []byte{0xff, 0xff, 0xff, 0xff}},
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 9},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 9, Data: []byte{ProtoTCP, 0, 0, 0}},
			&expr.Immediate{Register: 10, Data: []byte{0xff, 0xff, 0xff, 0xff}},
			ldDport(10),
			&expr.Cmp{Op: expr.CmpOpEq, Register: 10, Data: []byte{0x1f, 0x90, 0, 0}}, // 8080
			&expr.Immediate{Register: 1, Data: []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 11, Data: []byte{13, 14, 15, 16}},
			ldDaddr(8), ldSaddr(9),
			&expr.Cmp{Op: expr.CmpOpEq, Register: 8, Data: []byte{192, 168, 0, 1, 10, 0, 0, 7}}, // spans 8 and 9
			&expr.Cmp{Op: expr.CmpOpLt, Register: 9, Data: []byte{10, 0, 0, 8}},
			&expr.Verdict{Kind: expr.VerdictDrop}))}}
	if o := wOne(t, rs, wPkt("10.0.0.7", "192.168.0.1", ProtoTCP, 8080)); o.Verdict != VerdictDrop {
		t.Fatalf("tcp to 8080 not dropped:\n%s", o.Explain())
	}
	for _, p := range []Packet{wPkt("10.0.0.7", "192.168.0.1", ProtoUDP, 8080), wPkt("10.0.0.7", "192.168.0.1", ProtoTCP, 8081),
		wPkt("10.0.0.8", "192.168.0.1", ProtoTCP, 8080)} {
		if o := wOne(t, rs, p); o.Verdict != VerdictAccept {
			t.Fatalf("%s: %s", p, o.Explain())
		}
	}
}

func TestWalkUnwrittenRegister(t *testing.T) {
	// A register written by an earlier rule does not count: podnet's rules never rely on it.
	rs := &Ruleset{Chains: []*Chain{wBase("in", nftables.ChainTypeFilter, nftables.ChainHookPrerouting, 0,
		wRule(ldDaddr(8)),
		wRule(ldDport(9), &expr.Cmp{Op: expr.CmpOpEq, Register: 8, Data: []byte{192, 168, 0, 1, 0, 80}}))}}
	_, err := Walk(rs, walkTestNode, wPkt("10.0.0.7", "192.168.0.1", ProtoTCP, 80))
	if err == nil || !strings.Contains(err.Error(), "reads register 8") {
		t.Fatalf("err = %v", err)
	}
}

// TestWalkMalformed: what the walker does not understand is an error, never skipped.
func TestWalkMalformed(t *testing.T) {
	pre := func(rules ...Rule) *Chain {
		return wBase("pre", nftables.ChainTypeNAT, nftables.ChainHookPrerouting, -100, rules...)
	}
	set := func() *Set {
		return &Set{Name: "s", Key: keyEntry, Data: dataVerdict, Elements: map[string]Element{}}
	}
	dnat := &expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 8}
	cases := []struct {
		name   string
		rs     *Ruleset
		errHas string
	}{
		{"unknown expression", &Ruleset{Chains: []*Chain{pre(wRule(&expr.Log{}))}}, "does not know *expr.Log"},
		{"empty rule", &Ruleset{Chains: []*Chain{pre(wRule())}}, "no expressions"},
		{"statement not last", &Ruleset{Chains: []*Chain{pre(wRule(&expr.Verdict{Kind: expr.VerdictAccept}, ldDaddr(8)))}}, "ends the rule"},
		{"missing set", &Ruleset{Chains: []*Chain{pre(wRule(ldDaddr(8), &expr.Lookup{SourceRegister: 8, SetName: "nope"}))}}, "does not exist"},
		{"missing chain", &Ruleset{Chains: []*Chain{pre(wRule(jump("nope")))}}, "does not exist"},
		{"jump to base chain", &Ruleset{Chains: []*Chain{pre(wRule(jump("pre")))}}, "base chain"},
		{"bad register", &Ruleset{Chains: []*Chain{pre(wRule(ldDaddr(5)))}}, "not a data register"},
		{"element key length", &Ruleset{Chains: []*Chain{pre()}, Sets: []*Set{func() *Set {
			s := set()
			s.Elements["x"] = Element{Key: []byte("x"), Verdict: expr.VerdictDrop}
			return s
		}()}}, "key of 1 bytes"},
		{"element to missing chain", &Ruleset{Chains: []*Chain{pre()}, Sets: []*Set{func() *Set {
			s := set()
			k := entryKey(netip.MustParseAddr("10.96.0.1"), ProtoTCP, 80)
			s.Elements[string(k)] = Element{Key: k, Chain: "pick-gone"}
			return s
		}()}}, "no chain pick-gone"},
		{"vmap into a data register", &Ruleset{Chains: []*Chain{pre(wRule(ldDaddr(8), ldL4proto(9), ldDport(10),
			&expr.Lookup{SourceRegister: 8, DestRegister: 12, IsDestRegSet: true, SetName: "s"}))}, Sets: []*Set{set()}}, "verdict map"},
		{"dynset on a static set", &Ruleset{Chains: []*Chain{pre(wRule(ldDaddr(8), &expr.Dynset{SrcRegKey: 8, SetName: "s"}))},
			Sets: []*Set{set()}}, "not dynamic"},
		{"nat in forward", &Ruleset{Chains: []*Chain{wBase("fwd", nftables.ChainTypeNAT, nftables.ChainHookForward, 0)}}, "forward"},
		{"two chains with one name", &Ruleset{Chains: []*Chain{pre(), pre()}}, "twice"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := NewWalker(c.rs, walkTestNode)
			if err == nil || !strings.Contains(err.Error(), c.errHas) {
				t.Fatalf("err = %v, want one containing %q", err, c.errHas)
			}
		})
	}
	// Errors only a packet can reveal.
	runtime := []struct {
		name   string
		rs     *Ruleset
		errHas string
	}{
		{"dnat in a filter chain", &Ruleset{Chains: []*Chain{wBase("f", nftables.ChainTypeFilter, nftables.ChainHookPrerouting, 0,
			wRule(ldDaddr(8), dnat))}}, "only nat prerouting and output chains may dnat"},
		{"dnat in postrouting", &Ruleset{Chains: []*Chain{wBase("post", nftables.ChainTypeNAT, nftables.ChainHookPostrouting, 100,
			wRule(ldDaddr(8), dnat))}}, "only nat prerouting and output chains may dnat"},
		{"masquerade in prerouting", &Ruleset{Chains: []*Chain{pre(wRule(&expr.Masq{}))}}, "only nat postrouting chains may masquerade"},
		{"snat", &Ruleset{Chains: []*Chain{pre(wRule(ldDaddr(8), &expr.NAT{Type: expr.NATTypeSourceNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 8}))}}, "only dnat"},
		{"numgen incremental", &Ruleset{Chains: []*Chain{pre(wRule(&expr.Numgen{Register: 8, Modulus: 2, Type: unix.NFT_NG_INCREMENTAL}))}}, "only numgen random"},
		{"meta key", &Ruleset{Chains: []*Chain{pre(wRule(&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 8}))}}, "not modelled"},
		{"ct key", &Ruleset{Chains: []*Chain{pre(wRule(&expr.Ct{Key: expr.CtKeyMARK, Register: 8}))}}, "not modelled"},
		{"payload write", &Ruleset{Chains: []*Chain{pre(wRule(ldDaddr(8), &expr.Payload{OperationType: expr.PayloadWrite, SourceRegister: 8,
			Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4}))}}, "payload writes"},
		{"payload past the header", &Ruleset{Chains: []*Chain{pre(wRule(&expr.Payload{DestRegister: 8,
			Base: expr.PayloadBaseTransportHeader, Offset: 30, Len: 2}))}}, "past the modelled"},
		{"reject in postrouting", &Ruleset{Chains: []*Chain{wBase("post", nftables.ChainTypeFilter, nftables.ChainHookPostrouting, 0,
			wRule(&expr.Reject{Type: unix.NFT_REJECT_TCP_RST}))}}, "reject in post"},
		{"register past the end", &Ruleset{Chains: []*Chain{pre(wRule(ldDaddr(23), ldDport(8),
			&expr.Cmp{Op: expr.CmpOpEq, Register: 23, Data: make([]byte, 8)}))}}, "past the registers"},
		{"jump loop", &Ruleset{Chains: []*Chain{pre(wRule(jump("a"))), {Name: "a", Rules: []Rule{wRule(jump("a"))}}}}, "16 nested jumps"},
	}
	for _, c := range runtime {
		t.Run(c.name, func(t *testing.T) {
			w, err := NewWalker(c.rs, walkTestNode)
			if err != nil {
				t.Fatalf("NewWalker: %v", err)
			}
			_, err = w.Walk(wPkt("10.0.0.7", "10.0.0.8", ProtoTCP, 80))
			if err == nil || !strings.Contains(err.Error(), c.errHas) {
				t.Fatalf("err = %v, want one containing %q", err, c.errHas)
			}
		})
	}
	if _, err := Walk(&Ruleset{}, walkTestNode, Packet{Src: netip.MustParseAddr("::1"), Dst: netip.MustParseAddr("::2")}); err == nil {
		t.Fatal("an IPv6 packet walked")
	}
}

// TestWalkChainFlow: jump returns to the rule after the jump, goto does not, return and the end
// of a regular chain go back to the caller, an accept ends only its base chain, drop ends all.
func TestWalkChainFlow(t *testing.T) {
	rs := &Ruleset{Chains: []*Chain{
		wBase("pre", nftables.ChainTypeFilter, nftables.ChainHookPrerouting, 0,
			wRule(jump("a")),
			wOrMark(0x1),
			wRule(&expr.Verdict{Kind: expr.VerdictAccept}),
			wOrMark(0x1000)), // never: accept ended the chain
		wBase("pre2", nftables.ChainTypeFilter, nftables.ChainHookPrerouting, 10,
			wOrMark(0x2)), // runs after pre's accept
		{Name: "a", Rules: []Rule{
			wOrMark(0x10),
			wRule(gotoC("b")),
			wOrMark(0x2000)}}, // never: goto does not come back
		{Name: "b", Rules: []Rule{
			wOrMark(0x100),
			wRule(&expr.Verdict{Kind: expr.VerdictReturn}),
			wOrMark(0x4000)}}, // never: returned
	}}
	o := wOne(t, rs, wPkt("10.0.0.7", "10.0.0.8", ProtoTCP, 80))
	if o.Mark != 0x113 || o.Verdict != VerdictAccept {
		t.Fatalf("mark %#x, want 0x113:\n%s", o.Mark, o.Explain())
	}
	if want := []string{"prerouting", "forward", "postrouting"}; !reflect.DeepEqual(o.Hooks, want) {
		t.Fatalf("hooks %v, want %v", o.Hooks, want)
	}
	// drop stops every later chain and hook
	rs.Chains[0].Rules[2] = wRule(&expr.Verdict{Kind: expr.VerdictDrop})
	o = wOne(t, rs, wPkt("10.0.0.7", "10.0.0.8", ProtoTCP, 80))
	if o.Verdict != VerdictDrop || o.Mark != 0x111 || len(o.Hooks) != 1 {
		t.Fatalf("%s mark %#x hooks %v", o.Result(), o.Mark, o.Hooks)
	}
}

// TestWalkHookOrder: chains run by priority within a hook; all nat chains run at the NAT core's
// priority (-100 in prerouting), ordered by their own priority, only for new connections, and
// only until one sets a mapping up; a DNAT is seen by later chains and decides the route.
func TestWalkHookOrder(t *testing.T) {
	dnatTo := func(addr string, port uint16) []expr.Any {
		a := netip.MustParseAddr(addr)
		return []expr.Any{&expr.Immediate{Register: 8, Data: addrBytes(a)}, &expr.Immediate{Register: 9, Data: portBytes(port)},
			&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 8, RegProtoMin: 9, Specified: true}}
	}
	daddrIs := func(addr string) []expr.Any {
		return []expr.Any{ldDaddr(8), &expr.Cmp{Op: expr.CmpOpEq, Register: 8, Data: addrBytes(netip.MustParseAddr(addr))}}
	}
	rs := &Ruleset{Chains: []*Chain{
		wBase("filter-late", nftables.ChainTypeFilter, nftables.ChainHookPrerouting, 0,
			wRule(append(daddrIs("192.168.0.1"), &expr.Meta{Key: expr.MetaKeyMARK, Register: 9},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 9, Data: hostU32(0x1)}, &expr.Verdict{Kind: expr.VerdictDrop})...)),
		wBase("nat-b", nftables.ChainTypeNAT, nftables.ChainHookPrerouting, 50, wRule(dnatTo("10.9.9.9", 1)...)),
		wBase("nat-a", nftables.ChainTypeNAT, nftables.ChainHookPrerouting, -300, wSetMark(0x1, dnatTo("192.168.0.1", 8080)...)),
		wBase("filter-early", nftables.ChainTypeFilter, nftables.ChainHookPrerouting, -150, wSetMark(0x2)),
		wBase("input", nftables.ChainTypeFilter, nftables.ChainHookInput, 0, wOrMark(0x10)),
		wBase("forward", nftables.ChainTypeFilter, nftables.ChainHookForward, 0, wOrMark(0x20)),
	}}
	p := wPkt("10.0.0.7", "10.96.0.1", ProtoTCP, 80)
	o := wOne(t, rs, p)
	// filter-early (-150) sets 0x2; nat-a (first nat chain) sets 0x1 and DNATs to a local
	// address; nat-b does not run; filter-late sees the new daddr and the mark 0x1 and drops.
	if o.Verdict != VerdictDrop || o.DNAT != netip.MustParseAddrPort("192.168.0.1:8080") {
		t.Fatalf("%s", o.Explain())
	}
	var chains []string
	for _, s := range o.Trace {
		if s.Rule >= 0 {
			chains = append(chains, s.Chain)
		}
	}
	if want := []string{"filter-early", "nat-a", "filter-late"}; !reflect.DeepEqual(chains, want) {
		t.Fatalf("chains %v, want %v\n%s", chains, want, o.Explain())
	}
	// Without the drop: the DNATed packet is local: input, not forward.
	rs.Chains[0].Rules = nil
	o = wOne(t, rs, p)
	if o.Verdict != VerdictAccept || o.Mark != 0x11 || !reflect.DeepEqual(o.Hooks, []string{"prerouting", "input"}) {
		t.Fatalf("mark %#x hooks %v\n%s", o.Mark, o.Hooks, o.Explain())
	}
	// An established packet skips the nat chains.
	p.Established = true
	o = wOne(t, rs, p)
	if o.DNAT.IsValid() || o.Mark != 0x22 || !reflect.DeepEqual(o.Hooks, []string{"prerouting", "forward", "postrouting"}) {
		t.Fatalf("mark %#x hooks %v\n%s", o.Mark, o.Hooks, o.Explain())
	}
}

// TestWalkLocalPacket: output, postrouting, and through loopback to input when the destination
// is local; the nat prerouting chain does not see it again.
func TestWalkLocalPacket(t *testing.T) {
	rs := &Ruleset{Chains: []*Chain{
		wBase("out", nftables.ChainTypeNAT, nftables.ChainHookOutput, -100, wOrMark(0x1)),
		wBase("pre", nftables.ChainTypeNAT, nftables.ChainHookPrerouting, -100, wOrMark(0x2)),
		wBase("in", nftables.ChainTypeFilter, nftables.ChainHookInput, 0, wOrMark(0x4)),
		wBase("post", nftables.ChainTypeNAT, nftables.ChainHookPostrouting, 100, wOrMark(0x8)),
	}}
	p := wPkt("192.168.0.1", "127.0.0.1", ProtoUDP, 53)
	p.Local = true
	o := wOne(t, rs, p)
	if o.Mark != 0xd || !reflect.DeepEqual(o.Hooks, []string{"output", "postrouting", "prerouting", "input"}) {
		t.Fatalf("mark %#x hooks %v\n%s", o.Mark, o.Hooks, o.Explain())
	}
	p.Dst = netip.MustParseAddr("10.0.0.8")
	o = wOne(t, rs, p)
	if o.Mark != 0x9 || !reflect.DeepEqual(o.Hooks, []string{"output", "postrouting"}) {
		t.Fatalf("mark %#x hooks %v\n%s", o.Mark, o.Hooks, o.Explain())
	}
}

// TestWalkNumgen: every value of every numgen is an outcome, with probability 1/N for each draw,
// in the lexicographic order of the draws.
func TestWalkNumgen(t *testing.T) {
	rs := &Ruleset{Chains: []*Chain{
		wBase("pre", nftables.ChainTypeFilter, nftables.ChainHookPrerouting, 0,
			wRule(&expr.Numgen{Register: 8, Modulus: 2, Type: unix.NFT_NG_RANDOM, Offset: 1},
				&expr.Meta{Key: expr.MetaKeyMARK, Register: 8, SourceRegister: true}),
			wRule(&expr.Meta{Key: expr.MetaKeyMARK, Register: 8},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 8, Data: hostU32(2)}, jump("three"))),
		{Name: "three", Rules: []Rule{wRule(&expr.Numgen{Register: 8, Modulus: 3, Type: unix.NFT_NG_RANDOM, Offset: 10},
			&expr.Meta{Key: expr.MetaKeyMARK, Register: 8, SourceRegister: true})}},
	}}
	outs := wWalk(t, rs, wPkt("10.0.0.7", "10.0.0.8", ProtoTCP, 80))
	var marks []uint32
	var probs []float64
	for _, o := range outs {
		marks = append(marks, o.Mark)
		probs = append(probs, o.Probability)
	}
	if want := []uint32{1, 10, 11, 12}; !reflect.DeepEqual(marks, want) {
		t.Fatalf("marks %v, want %v", marks, want)
	}
	if want := []float64{0.5, 1.0 / 6, 1.0 / 6, 1.0 / 6}; !reflect.DeepEqual(probs, want) {
		t.Fatalf("probabilities %v, want %v", probs, want)
	}
	if d := outs[2].Draws; len(d) != 2 || d[0].Value != 2 || d[1].Value != 11 || d[1].Chain != "three" || d[1].Modulus != 3 {
		t.Fatalf("draws %+v", d)
	}
}

// TestWalkDynset: a dynset update is an outcome's, until Remember makes it the walker's; an
// existing element keeps its data.
func TestWalkDynset(t *testing.T) {
	aff := &Set{Name: "aff", Key: []nftables.SetDatatype{nftables.TypeIPAddr}, Data: []nftables.SetDatatype{nftables.TypeMark},
		Dynamic: true, Elements: map[string]Element{}}
	rs := &Ruleset{Sets: []*Set{aff}, Chains: []*Chain{
		wBase("pre", nftables.ChainTypeFilter, nftables.ChainHookPrerouting, 0,
			// a known client gets its remembered mark
			wRule(ldSaddr(8), &expr.Lookup{SourceRegister: 8, DestRegister: 9, IsDestRegSet: true, SetName: "aff"},
				&expr.Dynset{SrcRegKey: 8, SrcRegData: 9, SetName: "aff", Operation: unix.NFT_DYNSET_OP_UPDATE},
				&expr.Meta{Key: expr.MetaKeyMARK, Register: 9, SourceRegister: true}, &expr.Verdict{Kind: expr.VerdictAccept}),
			// another draws one
			wRule(ldSaddr(8), &expr.Numgen{Register: 9, Modulus: 2, Type: unix.NFT_NG_RANDOM, Offset: 7},
				&expr.Dynset{SrcRegKey: 8, SrcRegData: 9, SetName: "aff", Operation: unix.NFT_DYNSET_OP_UPDATE},
				&expr.Meta{Key: expr.MetaKeyMARK, Register: 9, SourceRegister: true})),
	}}
	w, err := NewWalker(rs, walkTestNode)
	if err != nil {
		t.Fatal(err)
	}
	p := wPkt("10.0.0.7", "10.0.0.8", ProtoTCP, 80)
	outs, err := w.Walk(p)
	if err != nil || len(outs) != 2 {
		t.Fatalf("%d outcomes, %v", len(outs), err)
	}
	u := outs[1].Updates
	if len(u) != 1 || !u[0].Added || u[0].Set != "aff" || !reflect.DeepEqual(u[0].Data, hostU32(8)) {
		t.Fatalf("updates %+v", u)
	}
	w.Remember(outs[1])
	for i := 0; i < 2; i++ {
		again, err := w.Walk(p)
		if err != nil || len(again) != 1 || again[0].Mark != 8 || again[0].Probability != 1 {
			t.Fatalf("second walk: %v %+v", err, again)
		}
		if u := again[0].Updates; len(u) != 1 || u[0].Added || !reflect.DeepEqual(u[0].Data, hostU32(8)) {
			t.Fatalf("refresh %+v", u)
		}
		w.Remember(again[0])
	}
	other := p
	other.Src = netip.MustParseAddr("10.0.0.9")
	if outs, err := w.Walk(other); err != nil || len(outs) != 2 {
		t.Fatalf("another client: %d outcomes, %v", len(outs), err)
	}
	if err := w.AddElement("aff", addrBytes(other.Src), hostU32(42)); err != nil {
		t.Fatal(err)
	}
	if outs, err := w.Walk(other); err != nil || len(outs) != 1 || outs[0].Mark != 42 {
		t.Fatalf("seeded client: %v %+v", err, outs)
	}
	if err := w.AddElement("aff", []byte{1}, hostU32(42)); err == nil {
		t.Fatal("a short key was accepted")
	}
}

func TestWalkReject(t *testing.T) {
	chain := func(e ...expr.Any) *Ruleset {
		return &Ruleset{Chains: []*Chain{wBase("in", nftables.ChainTypeFilter, nftables.ChainHookInput, 0, wRule(e...))}}
	}
	cases := []struct {
		rs    *Ruleset
		proto uint8
		want  string
	}{
		{chain(&expr.Reject{Type: unix.NFT_REJECT_TCP_RST}), ProtoTCP, "reject tcp reset"},
		{chain(&expr.Reject{Type: unix.NFT_REJECT_TCP_RST}), ProtoUDP, "drop"}, // nothing is sent for UDP
		{chain(&expr.Reject{Type: unix.NFT_REJECT_ICMP_UNREACH, Code: 3}), ProtoUDP, "reject icmp port-unreachable"},
		{chain(&expr.Reject{Type: unix.NFT_REJECT_ICMP_UNREACH, Code: 13}), ProtoTCP, "reject icmp admin-prohibited"},
		{chain(&expr.Reject{Type: unix.NFT_REJECT_ICMPX_UNREACH, Code: unix.NFT_REJECT_ICMPX_HOST_UNREACH}), 1, "reject icmp host-unreachable"},
	}
	for _, c := range cases {
		o := wOne(t, c.rs, wPkt("10.0.0.7", "192.168.0.1", c.proto, 80))
		if o.Result() != c.want || !reflect.DeepEqual(o.Hooks, []string{"prerouting", "input"}) {
			t.Errorf("%s: %s, want %s", exprString(c.rs.Chains[0].Rules[0].Exprs[0]), o.Result(), c.want)
		}
	}
}

func TestWalkFibAndCt(t *testing.T) {
	// fib daddr type local, ct state new and ct status dnat, each setting one mark bit.
	rs := &Ruleset{Chains: []*Chain{wBase("pre", nftables.ChainTypeFilter, nftables.ChainHookPrerouting, 0,
		wRule(append(fibLocal(), wOrMark(0x1).Exprs...)...),
		wRule(append(ctStateNew(), wOrMark(0x2).Exprs...)...),
		wRule(append([]expr.Any{&expr.Ct{Key: expr.CtKeySTATUS, Register: 8},
			&expr.Bitwise{SourceRegister: 8, DestRegister: 8, Len: 4, Mask: hostU32(ctStatusDNAT), Xor: hostU32(0)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 8, Data: hostU32(0)}}, wOrMark(0x4).Exprs...)...),
	)}}
	cases := []struct {
		dst         string
		established bool
		dnated      bool
		mark        uint32
	}{
		{"192.168.0.1", false, false, 0x3},
		{"127.0.0.53", false, false, 0x3},
		{"10.0.0.8", false, false, 0x2},
		{"10.0.0.8", true, false, 0x0},
		{"10.0.0.8", true, true, 0x4},
	}
	for _, c := range cases {
		p := wPkt("10.0.0.7", c.dst, ProtoTCP, 80)
		p.Established, p.DNATed = c.established, c.dnated
		if o := wOne(t, rs, p); o.Mark != c.mark {
			t.Errorf("%s: mark %#x, want %#x\n%s", p, o.Mark, c.mark, o.Explain())
		}
	}
	if _, err := Walk(rs, walkTestNode, Packet{Src: netip.MustParseAddr("10.0.0.7"), Dst: netip.MustParseAddr("10.0.0.8"), DNATed: true}); err == nil {
		t.Fatal("a new connection that is already DNATed walked")
	}
}
