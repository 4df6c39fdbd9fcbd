package proxy

// The packet walker: it evaluates a Ruleset through its rules' google/nftables expressions (the
// very []expr.Any the kernel is given), the way nf_tables does, for one packet on one node. It
// is how tests check what a rendered table does with traffic, and what `podnet explain` shows.
//
// What it models:
//   - the register file: the verdict register and sixteen 32-bit data registers numbered 8..23
//     (the legacy 128-bit registers 1..4 alias them); a value shorter than a whole register
//     zeroes the rest of its last register, and a concatenation spans consecutive registers.
//     Reading a register that no earlier expression of the same rule wrote is an error: podnet's
//     rules never carry values from rule to rule.
//   - the hooks an IPv4 packet traverses: a packet arriving from a pod or the outside goes
//     prerouting, then input if its (possibly DNATed) destination is local, otherwise forward
//     and postrouting; a packet generated on the node goes output and postrouting, then, if its
//     destination is local, comes back through loopback: prerouting and input. Base chains run
//     in priority order within a hook; nat chains run as the kernel's NAT core runs them: all at
//     the NAT priority (-100 for prerouting/output, 100 for input/postrouting), ordered by their
//     own priorities, only for the first packet of a connection, and only until one sets up a
//     mapping.
//   - conntrack as seen by ct state / ct status: a packet is new or established; a DNAT or a
//     masquerade sets the status bits later hooks see.
//   - numgen random: the walker does not draw, it enumerates every value, so Walk returns every
//     possible outcome with its probability.
//   - dynamic sets (the ClientIP affinity map): dynset updates are recorded in the outcome, and
//     Walker.Remember makes a chosen outcome's updates visible to the packets walked after it.
//
// Anything else (an expression type or variant the walker does not know, a malformed rule, a
// missing set or chain) is an error, never silently skipped.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Packet is the first packet (or, with Established, a later packet) of a connection as it
// reaches the node's netfilter hooks.
type Packet struct {
	Src, Dst         netip.Addr // IPv4
	Proto            uint8      // ProtoTCP, ProtoUDP, ProtoSCTP, or 1 (ICMP: an echo request)
	SrcPort, DstPort uint16
	// Local: the packet is generated on the node (a host process or a hostNetwork pod) and
	// takes the output path; otherwise it arrives from a pod or from outside the node.
	Local bool
	// Established: the packet belongs to a connection conntrack already tracks (ct state
	// established). The zero value is the first packet of a new connection. NAT chains do not
	// see established packets: conntrack applies the connection's mapping, which the walker
	// does not know.
	Established bool
	// DNATed: (with Established) the connection was DNATed when it began (ct status dnat).
	DNATed bool
	Mark   uint32 // the packet mark (meta mark) when the packet reaches the first hook
}

func (p Packet) String() string {
	s := fmt.Sprintf("%s %s:%d -> %s:%d", protoName(p.Proto), p.Src, p.SrcPort, p.Dst, p.DstPort)
	if p.Local {
		s += " (local)"
	}
	if p.Established {
		s += " (established)"
	}
	return s
}

// NodeInfo is what the walker knows of the node: its local addresses (what `fib daddr type
// local` matches, besides 127.0.0.0/8).
type NodeInfo struct {
	LocalAddrs []netip.Addr
}

// IsLocal says whether a is an address of the node.
func (n NodeInfo) IsLocal(a netip.Addr) bool {
	if a.IsLoopback() {
		return true
	}
	for _, l := range n.LocalAddrs {
		if l == a {
			return true
		}
	}
	return false
}

// Verdict is what finally happens to a packet.
type Verdict int

const (
	VerdictAccept Verdict = iota // the packet goes on (delivered locally or routed out)
	VerdictDrop                  // silently dropped
	VerdictReject                // dropped with an answer (Outcome.Reject says which)
)

func (v Verdict) String() string {
	switch v {
	case VerdictAccept:
		return "accept"
	case VerdictDrop:
		return "drop"
	case VerdictReject:
		return "reject"
	}
	return fmt.Sprintf("verdict(%d)", int(v))
}

// MasqReason says why a packet was masqueraded.
type MasqReason string

const (
	MasqNone    MasqReason = ""        // not masqueraded
	MasqByMark  MasqReason = "mark"    // a pick chain set MasqueradeMark
	MasqHairpin MasqReason = "hairpin" // a pod reached itself through a Service
	MasqByRule  MasqReason = "rule"    // some other masquerade rule
)

// Draw is one numgen value an outcome drew.
type Draw struct {
	Chain   string
	Rule    int
	Modulus uint32
	Value   uint32 // numgen's output: the drawn number plus the expression's offset
}

// SetUpdate is one change a dynset expression made to a dynamic set.
type SetUpdate struct {
	Set     string
	Key     []byte
	Data    []byte // the element's data (for an existing element, its unchanged data)
	Timeout time.Duration
	Added   bool // a new element; false: an existing element's timeout was refreshed
}

// Step is one line of an outcome's trace: a rule evaluated, a chain's policy applied, or a
// routing decision (Chain empty).
type Step struct {
	Hook   string
	Chain  string
	Rule   int // the rule's index in the chain; -1 for a policy or a note
	Text   string
	Result string
}

func (s Step) String() string {
	if s.Chain == "" {
		return fmt.Sprintf("%-11s %s", s.Hook, s.Result)
	}
	if s.Rule < 0 {
		return fmt.Sprintf("%-11s %s: %s", s.Hook, s.Chain, s.Result)
	}
	return fmt.Sprintf("%-11s %s[%d] %s: %s", s.Hook, s.Chain, s.Rule, s.Text, s.Result)
}

// Outcome is one possible fate of a packet.
type Outcome struct {
	Probability float64
	Verdict     Verdict
	Reject      string         // for VerdictReject: "tcp reset", "icmp port-unreachable", …
	DNAT        netip.AddrPort // the destination the connection was DNATed to; invalid if none
	Masquerade  MasqReason     // MasqNone unless the source was masqueraded
	Mark        uint32         // the packet mark when the walk ended
	Hooks       []string       // the hooks traversed, in order
	Draws       []Draw         // the numgen values this outcome drew
	Updates     []SetUpdate    // changes to dynamic sets (apply with Walker.Remember)
	Trace       []Step
}

// Result sums an outcome up in one line, e.g. "accept dnat 10.244.1.2:8080 masquerade(mark)".
func (o Outcome) Result() string {
	s := o.Verdict.String()
	if o.Verdict == VerdictReject && o.Reject != "" {
		s += " " + o.Reject
	}
	if o.DNAT.IsValid() {
		s += " dnat " + o.DNAT.String()
	}
	if o.Masquerade != MasqNone {
		s += " masquerade(" + string(o.Masquerade) + ")"
	}
	return s
}

// Explain shows the outcome with its probability and its trace, one step per line.
func (o Outcome) Explain() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s  (p=%.4g)\n", o.Result(), o.Probability)
	for _, s := range o.Trace {
		fmt.Fprintf(&b, "  %s\n", s)
	}
	return b.String()
}

// Distribution adds up the probabilities of outcomes with the same Result.
func Distribution(outs []Outcome) map[string]float64 {
	m := map[string]float64{}
	for _, o := range outs {
		m[o.Result()] += o.Probability
	}
	return m
}

// MaxOutcomes bounds how many outcomes one walk may enumerate.
const MaxOutcomes = 1 << 16

// Walker evaluates packets against one ruleset on one node. It keeps the dynamic sets' elements
// remembered between walks. A Walker is not safe for concurrent use.
type Walker struct {
	rs      *Ruleset
	node    NodeInfo
	sets    map[string]*Set
	chains  map[string]*Chain
	hooks   map[nftables.ChainHook][]walkHookEntry
	dynamic map[string]map[string][]byte // set → key → data, learnt by Remember / AddElement
}

// walkHookEntry is one place in a hook: a filter (or route) chain, or the NAT core running all of
// the hook's nat chains.
type walkHookEntry struct {
	prio   int32
	nat    bool
	chains []*Chain
}

// Walk is NewWalker(rs, node) followed by one Walk.
func Walk(rs *Ruleset, node NodeInfo, p Packet) ([]Outcome, error) {
	w, err := NewWalker(rs, node)
	if err != nil {
		return nil, err
	}
	return w.Walk(p)
}

// NewWalker checks the ruleset (every rule, set and element, not only those a packet would
// reach) and prepares to walk packets through it.
func NewWalker(rs *Ruleset, node NodeInfo) (*Walker, error) {
	w := &Walker{rs: rs, node: node, sets: map[string]*Set{}, chains: map[string]*Chain{},
		hooks: map[nftables.ChainHook][]walkHookEntry{}, dynamic: map[string]map[string][]byte{}}
	for _, s := range rs.Sets {
		if _, dup := w.sets[s.Name]; dup {
			return nil, fmt.Errorf("set %s defined twice", s.Name)
		}
		w.sets[s.Name] = s
	}
	for _, c := range rs.Chains {
		if _, dup := w.chains[c.Name]; dup {
			return nil, fmt.Errorf("chain %s defined twice", c.Name)
		}
		w.chains[c.Name] = c
	}
	for _, s := range rs.Sets {
		if err := w.checkSet(s); err != nil {
			return nil, fmt.Errorf("set %s: %w", s.Name, err)
		}
	}
	natGroup := map[nftables.ChainHook]*walkHookEntry{}
	for _, c := range rs.Chains {
		for i, r := range c.Rules {
			if err := w.checkRule(r); err != nil {
				return nil, fmt.Errorf("chain %s rule %d (%s): %w", c.Name, i, r.Text, err)
			}
		}
		if c.Hook == nil {
			continue
		}
		h := c.Hook.Hooknum
		switch h {
		case *nftables.ChainHookPrerouting, *nftables.ChainHookInput, *nftables.ChainHookForward,
			*nftables.ChainHookOutput, *nftables.ChainHookPostrouting:
		default:
			return nil, fmt.Errorf("chain %s: hook %d is not an ip family hook", c.Name, h)
		}
		switch c.Hook.Type {
		case nftables.ChainTypeFilter, nftables.ChainTypeRoute:
			if c.Hook.Type == nftables.ChainTypeRoute && h != *nftables.ChainHookOutput {
				return nil, fmt.Errorf("chain %s: a route chain must hook output", c.Name)
			}
			w.hooks[h] = append(w.hooks[h], walkHookEntry{prio: c.Hook.Priority, chains: []*Chain{c}})
		case nftables.ChainTypeNAT:
			if h == *nftables.ChainHookForward {
				return nil, fmt.Errorf("chain %s: nat chains cannot hook forward", c.Name)
			}
			g := natGroup[h]
			if g == nil {
				g = &walkHookEntry{prio: natPriority(h), nat: true}
				natGroup[h] = g
			}
			g.chains = append(g.chains, c)
		default:
			return nil, fmt.Errorf("chain %s: unknown chain type %q", c.Name, c.Hook.Type)
		}
	}
	for h, g := range natGroup {
		sort.SliceStable(g.chains, func(i, j int) bool { return g.chains[i].Hook.Priority < g.chains[j].Hook.Priority })
		w.hooks[h] = append(w.hooks[h], *g)
	}
	for h := range w.hooks {
		e := w.hooks[h]
		sort.SliceStable(e, func(i, j int) bool { return e[i].prio < e[j].prio })
	}
	return w, nil
}

// natPriority is where the kernel's NAT core sits in a hook (NF_IP_PRI_NAT_DST / _SRC).
func natPriority(h nftables.ChainHook) int32 {
	if h == *nftables.ChainHookPrerouting || h == *nftables.ChainHookOutput {
		return -100
	}
	return 100
}

// kernelKeyLen is the key length the kernel gives a set: a single type's own length, or a
// concatenation's register-padded length.
func kernelKeyLen(s *Set) int {
	if len(s.Key) == 1 {
		return int(s.Key[0].Bytes)
	}
	return s.KeyLen()
}

func kernelDataLen(s *Set) int {
	if len(s.Data) == 1 {
		return int(s.Data[0].Bytes)
	}
	return s.DataLen()
}

func (w *Walker) checkSet(s *Set) error {
	if len(s.Key) == 0 {
		return errors.New("no key type")
	}
	klen := kernelKeyLen(s)
	if klen > 64 {
		return fmt.Errorf("key of %d bytes is longer than the registers", klen)
	}
	for k, e := range s.Elements {
		if k != string(e.Key) {
			return fmt.Errorf("element %x filed under key %x", e.Key, k)
		}
		if len(e.Key) != klen {
			return fmt.Errorf("element %x: key of %d bytes, the set's keys have %d", e.Key, len(e.Key), klen)
		}
		switch {
		case s.IsVerdictMap():
			if e.Chain != "" {
				c := w.chains[e.Chain]
				if c == nil {
					return fmt.Errorf("element %s: no chain %s", s.FormatElement(e), e.Chain)
				}
				if c.Hook != nil {
					return fmt.Errorf("element %s: goto a base chain", s.FormatElement(e))
				}
			} else if e.Verdict != expr.VerdictAccept && e.Verdict != expr.VerdictDrop && e.Verdict != expr.VerdictReturn {
				return fmt.Errorf("element %s: unsupported verdict", s.FormatElement(e))
			}
		case len(s.Data) > 0:
			if len(e.Data) != kernelDataLen(s) {
				return fmt.Errorf("element %s: data of %d bytes, the set's data have %d", s.FormatElement(e), len(e.Data), kernelDataLen(s))
			}
		default:
			if e.Data != nil || e.Chain != "" {
				return fmt.Errorf("element %x of a plain set carries data", e.Key)
			}
		}
	}
	return nil
}

// checkRule checks what can be checked without a packet: known expressions, terminal statements
// last, existing sets and chains, register numbers.
func (w *Walker) checkRule(r Rule) error {
	if len(r.Exprs) == 0 {
		return errors.New("no expressions")
	}
	for i, e := range r.Exprs {
		terminal := false
		var regs []uint32
		switch x := e.(type) {
		case *expr.Payload:
			regs = []uint32{x.DestRegister}
			if x.OperationType == expr.PayloadWrite {
				regs = []uint32{x.SourceRegister}
			}
		case *expr.Meta:
			regs = []uint32{x.Register}
		case *expr.Cmp:
			regs = []uint32{x.Register}
		case *expr.Bitwise:
			regs = []uint32{x.SourceRegister, x.DestRegister}
		case *expr.Fib:
			regs = []uint32{x.Register}
		case *expr.Ct:
			regs = []uint32{x.Register}
		case *expr.Immediate:
			regs = []uint32{x.Register}
		case *expr.Numgen:
			regs = []uint32{x.Register}
		case *expr.Counter:
		case *expr.Lookup:
			s := w.sets[x.SetName]
			if s == nil {
				return fmt.Errorf("lookup in a set that does not exist: %q", x.SetName)
			}
			regs = []uint32{x.SourceRegister}
			if x.IsDestRegSet {
				switch {
				case len(s.Data) == 0:
					return fmt.Errorf("lookup with a destination in @%s, which is not a map", s.Name)
				case s.IsVerdictMap() && x.DestRegister != 0:
					return fmt.Errorf("verdict map @%s looked up into register %d", s.Name, x.DestRegister)
				case !s.IsVerdictMap() && x.DestRegister == 0:
					return fmt.Errorf("data map @%s looked up into the verdict register", s.Name)
				}
				if !s.IsVerdictMap() {
					regs = append(regs, x.DestRegister)
				}
				terminal = s.IsVerdictMap()
			}
		case *expr.Dynset:
			s := w.sets[x.SetName]
			if s == nil {
				return fmt.Errorf("dynset on a set that does not exist: %q", x.SetName)
			}
			if !s.Dynamic {
				return fmt.Errorf("dynset on @%s, which is not dynamic", s.Name)
			}
			regs = []uint32{x.SrcRegKey}
			if len(s.Data) > 0 {
				regs = append(regs, x.SrcRegData)
			}
		case *expr.NAT:
			regs = []uint32{x.RegAddrMin}
			if x.RegProtoMin != 0 {
				regs = append(regs, x.RegProtoMin)
			}
			terminal = true
		case *expr.Masq, *expr.Reject:
			terminal = true
		case *expr.Verdict:
			switch x.Kind {
			case expr.VerdictJump, expr.VerdictGoto:
				c := w.chains[x.Chain]
				if c == nil {
					return fmt.Errorf("%s to a chain that does not exist: %q", verdictKindName(x.Kind), x.Chain)
				}
				if c.Hook != nil {
					return fmt.Errorf("%s to base chain %s", verdictKindName(x.Kind), x.Chain)
				}
			case expr.VerdictAccept, expr.VerdictDrop, expr.VerdictReturn, expr.VerdictContinue, expr.VerdictBreak:
			default:
				return fmt.Errorf("unsupported verdict %d", x.Kind)
			}
			terminal = true
		default:
			return fmt.Errorf("expression %d: the walker does not know %T", i, e)
		}
		for _, reg := range regs {
			if _, err := regOffset(reg); err != nil {
				return fmt.Errorf("expression %d (%s): %w", i, exprString(e), err)
			}
		}
		if terminal && i != len(r.Exprs)-1 {
			return fmt.Errorf("expression %d (%s) ends the rule, but %d more follow it", i, exprString(e), len(r.Exprs)-1-i)
		}
	}
	return nil
}

// AddElement puts an element in a dynamic set, as the kernel would have it (for instance a
// ClientIP-affinity choice read back with Kernel.AffinityEntries).
func (w *Walker) AddElement(set string, key, data []byte) error {
	s := w.sets[set]
	if s == nil {
		return fmt.Errorf("no set %s", set)
	}
	if !s.Dynamic {
		return fmt.Errorf("set %s is not dynamic", set)
	}
	if len(key) != kernelKeyLen(s) {
		return fmt.Errorf("set %s: key of %d bytes, want %d", set, len(key), kernelKeyLen(s))
	}
	if len(s.Data) > 0 && len(data) != kernelDataLen(s) {
		return fmt.Errorf("set %s: data of %d bytes, want %d", set, len(data), kernelDataLen(s))
	}
	if w.dynamic[set] == nil {
		w.dynamic[set] = map[string][]byte{}
	}
	w.dynamic[set][string(key)] = bytes.Clone(data)
	return nil
}

// Remember applies an outcome's dynamic set updates, as if that outcome is what happened, so
// later walks see them (the second connection of a ClientIP-affinity client).
func (w *Walker) Remember(o Outcome) {
	for _, u := range o.Updates {
		if !u.Added {
			continue
		}
		if w.dynamic[u.Set] == nil {
			w.dynamic[u.Set] = map[string][]byte{}
		}
		w.dynamic[u.Set][string(u.Key)] = bytes.Clone(u.Data)
	}
}

// Walk returns every possible outcome for the packet, in the order of the numgen values drawn,
// with probabilities adding up to 1.
func (w *Walker) Walk(p Packet) ([]Outcome, error) {
	if !p.Src.Is4() || !p.Dst.Is4() {
		return nil, fmt.Errorf("packet %s: the walker models IPv4 only", p)
	}
	if p.DNATed && !p.Established {
		return nil, fmt.Errorf("packet %s: only an established connection can already be DNATed", p)
	}
	var out []Outcome
	if err := w.explore(p, nil, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// explore walks the packet drawing choices for the first numgen expressions it meets, then 0
// for every further one, and recurses into the other values of those further ones.
func (w *Walker) explore(p Packet, choices []uint32, out *[]Outcome) error {
	if len(*out) >= MaxOutcomes {
		return fmt.Errorf("packet %s: more than %d outcomes", p, MaxOutcomes)
	}
	r := newWalkRun(w, p, choices)
	if err := r.walk(); err != nil {
		return fmt.Errorf("packet %s: %w", p, err)
	}
	*out = append(*out, r.out)
	// r drew 0 at each fresh choice point; the other values, deepest first, give the outcomes
	// in lexicographic order of their draws.
	for j := len(r.fresh) - 1; j >= 0; j-- {
		for v := uint32(1); v < r.fresh[j]; v++ {
			next := append(append(append([]uint32{}, choices...), make([]uint32, j)...), v)
			if err := w.explore(p, next, out); err != nil {
				return err
			}
		}
	}
	return nil
}

// walkRun is one deterministic walk of a packet, given the values numgen draws.
type walkRun struct {
	w       *Walker
	choices []uint32 // values to draw, in order
	fresh   []uint32 // moduli of the draws made beyond choices (drawn as 0)
	draws   int

	pkt           Packet
	ctDNAT        bool
	ctSNAT        bool
	dstManip      bool // the connection's destination NAT is set up (or known to be none)
	srcManip      bool
	natBound      bool // the current nat chain set up a mapping
	dynamic       map[string]map[string][]byte
	terminated    bool
	hook          nftables.ChainHook
	base          *Chain // the base chain being evaluated
	regs          [64]byte
	written       [16]bool // registers written by the current rule
	verdict       expr.Verdict
	notes         []string // what the current rule's expressions did
	ruleSets      []string // sets the current rule looked up
	ruleReadsMark bool     // the current rule loaded meta mark
	chain         *Chain
	rule          int
	out           Outcome
}

func newWalkRun(w *Walker, p Packet, choices []uint32) *walkRun {
	r := &walkRun{w: w, choices: choices, pkt: p, dynamic: map[string]map[string][]byte{}}
	r.ctDNAT = p.DNATed
	r.dstManip, r.srcManip = p.Established, p.Established
	r.out = Outcome{Probability: 1}
	return r
}

func (r *walkRun) note(format string, args ...any) {
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
}

func (r *walkRun) step(chain string, rule int, text, result string) {
	r.out.Trace = append(r.out.Trace, Step{Hook: hookName(r.hook), Chain: chain, Rule: rule, Text: text, Result: result})
}

func (r *walkRun) walk() error {
	hooks := []nftables.ChainHook{*nftables.ChainHookPrerouting}
	if r.pkt.Local {
		hooks = []nftables.ChainHook{*nftables.ChainHookOutput, *nftables.ChainHookPostrouting}
	}
	for i := 0; i < len(hooks); i++ {
		h := hooks[i]
		if err := r.runHook(h); err != nil {
			return err
		}
		if r.terminated {
			break
		}
		switch h {
		case *nftables.ChainHookPrerouting:
			if r.w.node.IsLocal(r.pkt.Dst) {
				r.step("", -1, "", fmt.Sprintf("route: %s is local: input", r.pkt.Dst))
				hooks = append(hooks, *nftables.ChainHookInput)
			} else {
				r.step("", -1, "", fmt.Sprintf("route: %s is not local: forward", r.pkt.Dst))
				hooks = append(hooks, *nftables.ChainHookForward, *nftables.ChainHookPostrouting)
			}
		case *nftables.ChainHookPostrouting:
			if r.pkt.Local && r.w.node.IsLocal(r.pkt.Dst) {
				r.step("", -1, "", fmt.Sprintf("route: %s is local: back in through loopback", r.pkt.Dst))
				hooks = append(hooks, *nftables.ChainHookPrerouting) // then input, decided there
			}
		}
	}
	r.out.Mark = r.pkt.Mark
	return nil
}

func (r *walkRun) runHook(h nftables.ChainHook) error {
	r.hook = h
	r.out.Hooks = append(r.out.Hooks, hookName(h))
	for _, e := range r.w.hooks[h] {
		if !e.nat {
			if err := r.runBase(e.chains[0]); err != nil {
				return err
			}
			if r.terminated {
				return nil
			}
			continue
		}
		dst := h == *nftables.ChainHookPrerouting || h == *nftables.ChainHookOutput
		done := &r.srcManip
		if dst {
			done = &r.dstManip
		}
		var names []string
		for _, c := range e.chains {
			names = append(names, c.Name)
		}
		switch {
		case r.pkt.Established:
			r.step(strings.Join(names, ","), -1, "", "skipped: an established connection keeps the NAT conntrack set up when it began")
			continue
		case *done:
			r.step(strings.Join(names, ","), -1, "", "skipped: this connection's NAT is already set up")
			continue
		}
		for _, c := range e.chains {
			r.natBound = false
			if err := r.runBase(c); err != nil {
				return err
			}
			if r.terminated || r.natBound {
				break
			}
		}
		*done = true
		if r.terminated {
			return nil
		}
	}
	return nil
}

type walkFrame struct {
	chain *Chain
	next  int
}

// runBase evaluates a base chain with its jumps and gotos; it sets r.terminated on a drop.
func (r *walkRun) runBase(base *Chain) error {
	r.base = base
	var stack []walkFrame
	c, i := base, 0
	for {
		if i >= len(c.Rules) {
			if len(stack) == 0 {
				r.step(c.Name, -1, "", "policy accept")
				return nil
			}
			r.step(c.Name, -1, "", "end of chain: return")
			c, i = stack[len(stack)-1].chain, stack[len(stack)-1].next
			stack = stack[:len(stack)-1]
			continue
		}
		v, err := r.evalRule(c, i)
		if err != nil {
			return fmt.Errorf("chain %s rule %d (%s): %w", c.Name, i, c.Rules[i].Text, err)
		}
		i++
		switch v.Kind {
		case expr.VerdictContinue, expr.VerdictBreak:
		case expr.VerdictAccept:
			return nil
		case expr.VerdictDrop:
			r.terminated = true
			if r.out.Verdict != VerdictReject {
				r.out.Verdict = VerdictDrop
			}
			return nil
		case expr.VerdictJump, expr.VerdictGoto:
			next := r.w.chains[v.Chain]
			if next == nil || next.Hook != nil {
				return fmt.Errorf("%s to %q: not a regular chain", verdictKindName(v.Kind), v.Chain)
			}
			if v.Kind == expr.VerdictJump {
				if len(stack) >= 16 {
					return fmt.Errorf("jump to %s: more than 16 nested jumps", v.Chain)
				}
				stack = append(stack, walkFrame{c, i})
			}
			c, i = next, 0
		case expr.VerdictReturn:
			if len(stack) == 0 {
				r.step(c.Name, -1, "", "return from the base chain: policy accept")
				return nil
			}
			c, i = stack[len(stack)-1].chain, stack[len(stack)-1].next
			stack = stack[:len(stack)-1]
		default:
			return fmt.Errorf("unsupported verdict %d", v.Kind)
		}
	}
}

// evalRule evaluates one rule: its expressions in order until one ends it.
func (r *walkRun) evalRule(c *Chain, i int) (expr.Verdict, error) {
	rule := c.Rules[i]
	r.chain, r.rule = c, i
	r.verdict = expr.Verdict{Kind: expr.VerdictContinue}
	r.written = [16]bool{}
	r.notes, r.ruleSets, r.ruleReadsMark = nil, nil, false
	for j, e := range rule.Exprs {
		if err := r.eval(e); err != nil {
			return r.verdict, fmt.Errorf("expression %d (%s): %w", j, exprString(e), err)
		}
		if r.verdict.Kind != expr.VerdictContinue {
			break
		}
	}
	result := ""
	switch r.verdict.Kind {
	case expr.VerdictBreak:
		result = "no match"
	case expr.VerdictContinue:
		result = "match"
	case expr.VerdictJump, expr.VerdictGoto:
		result = verdictKindName(r.verdict.Kind) + " " + r.verdict.Chain
	default:
		result = verdictKindName(r.verdict.Kind)
	}
	if len(r.notes) > 0 {
		result += " (" + strings.Join(r.notes, "; ") + ")"
	}
	r.step(c.Name, i, rule.Text, result)
	return r.verdict, nil
}

func verdictKindName(k expr.VerdictKind) string {
	switch k {
	case expr.VerdictJump:
		return "jump"
	case expr.VerdictGoto:
		return "goto"
	case expr.VerdictContinue:
		return "continue"
	case expr.VerdictBreak:
		return "break"
	}
	return verdictName(k)
}

// Registers.

// regOffset is where a register's bytes start in the 64-byte register file.
func regOffset(reg uint32) (int, error) {
	switch {
	case reg >= 1 && reg <= 4: // NFT_REG_1..4: 16 bytes each, over the 32-bit registers
		return int(reg-1) * 16, nil
	case reg >= 8 && reg <= 23: // NFT_REG32_00..15
		return int(reg-8) * 4, nil
	}
	return 0, fmt.Errorf("register %d is not a data register", reg)
}

func (r *walkRun) load(reg uint32, n int) ([]byte, error) {
	off, err := regOffset(reg)
	if err != nil {
		return nil, err
	}
	if n <= 0 || off+n > len(r.regs) {
		return nil, fmt.Errorf("%d bytes from register %d run past the registers", n, reg)
	}
	for k := off / 4; k < (off+n+3)/4; k++ {
		if !r.written[k] {
			return nil, fmt.Errorf("reads register %d, which no earlier expression of this rule wrote", 8+k)
		}
	}
	return bytes.Clone(r.regs[off : off+n]), nil
}

// store writes v to the registers from reg on, zeroing the rest of the last register it
// touches, as the kernel's nft_data_copy and nft_reg_store* do.
func (r *walkRun) store(reg uint32, v []byte) error {
	off, err := regOffset(reg)
	if err != nil {
		return err
	}
	end := (off + len(v) + 3) &^ 3
	if len(v) == 0 || end > len(r.regs) {
		return fmt.Errorf("%d bytes into register %d run past the registers", len(v), reg)
	}
	clear(r.regs[off:end])
	copy(r.regs[off:], v)
	for k := off / 4; k < end/4; k++ {
		r.written[k] = true
	}
	return nil
}

func (r *walkRun) load32(reg uint32) (uint32, error) {
	b, err := r.load(reg, 4)
	if err != nil {
		return 0, err
	}
	return binary.NativeEndian.Uint32(b), nil
}

// Packet headers, rebuilt from the packet's current addresses and ports.

func (r *walkRun) networkHeader(thLen int) []byte {
	h := make([]byte, 20)
	h[0] = 0x45
	binary.BigEndian.PutUint16(h[2:], uint16(20+thLen))
	h[6] = 0x40 // don't fragment
	h[8] = 64
	h[9] = r.pkt.Proto
	s, d := r.pkt.Src.As4(), r.pkt.Dst.As4()
	copy(h[12:], s[:])
	copy(h[16:], d[:])
	return h
}

func (r *walkRun) transportHeader() ([]byte, error) {
	p := r.pkt
	var h []byte
	switch p.Proto {
	case ProtoTCP:
		h = make([]byte, 20)
		h[12] = 0x50
		h[13] = 0x02 // SYN
		if p.Established {
			h[13] = 0x10 // ACK
		}
		binary.BigEndian.PutUint16(h[14:], 0xffff)
	case ProtoUDP:
		h = make([]byte, 8)
		binary.BigEndian.PutUint16(h[4:], 8)
	case ProtoSCTP:
		h = make([]byte, 12)
	case 1: // ICMP echo request
		h = make([]byte, 8)
		h[0] = 8
		return h, nil
	default:
		return nil, fmt.Errorf("the walker does not model the transport header of protocol %d", p.Proto)
	}
	binary.BigEndian.PutUint16(h[0:], p.SrcPort)
	binary.BigEndian.PutUint16(h[2:], p.DstPort)
	return h, nil
}

// Expressions.

func (r *walkRun) eval(e expr.Any) error {
	switch x := e.(type) {
	case *expr.Payload:
		return r.payload(x)
	case *expr.Meta:
		return r.meta(x)
	case *expr.Cmp:
		return r.cmp(x)
	case *expr.Bitwise:
		return r.bitwise(x)
	case *expr.Lookup:
		return r.lookup(x)
	case *expr.Fib:
		return r.fib(x)
	case *expr.Ct:
		return r.ct(x)
	case *expr.Immediate:
		if x.Register == 0 {
			return errors.New("immediate data into the verdict register")
		}
		return r.store(x.Register, x.Data)
	case *expr.Numgen:
		return r.numgen(x)
	case *expr.Dynset:
		return r.dynset(x)
	case *expr.NAT:
		return r.nat(x)
	case *expr.Masq:
		return r.masq(x)
	case *expr.Reject:
		return r.reject(x)
	case *expr.Counter:
		return nil
	case *expr.Verdict:
		switch x.Kind {
		case expr.VerdictAccept, expr.VerdictDrop, expr.VerdictJump, expr.VerdictGoto, expr.VerdictReturn,
			expr.VerdictBreak, expr.VerdictContinue:
			r.verdict = *x
			return nil
		}
		return fmt.Errorf("unsupported verdict %d", x.Kind)
	}
	return fmt.Errorf("the walker does not know %T", e)
}

func (r *walkRun) payload(x *expr.Payload) error {
	if x.OperationType != expr.PayloadLoad {
		return errors.New("payload writes are not modelled")
	}
	th, err := r.transportHeader()
	if err != nil && x.Base == expr.PayloadBaseTransportHeader {
		return err
	}
	var h []byte
	switch x.Base {
	case expr.PayloadBaseNetworkHeader:
		h = r.networkHeader(len(th))
	case expr.PayloadBaseTransportHeader:
		h = th
	default:
		return fmt.Errorf("payload base %d is not modelled", x.Base)
	}
	if x.Len == 0 || int(x.Offset+x.Len) > len(h) {
		return fmt.Errorf("payload %d bytes at %d: past the modelled %d-byte header", x.Len, x.Offset, len(h))
	}
	return r.store(x.DestRegister, h[x.Offset:x.Offset+x.Len])
}

func (r *walkRun) meta(x *expr.Meta) error {
	switch x.Key {
	case expr.MetaKeyL4PROTO:
		if x.SourceRegister {
			return errors.New("meta l4proto cannot be set")
		}
		return r.store(x.Register, []byte{r.pkt.Proto})
	case expr.MetaKeyMARK:
		if x.SourceRegister {
			v, err := r.load32(x.Register)
			if err != nil {
				return err
			}
			if v != r.pkt.Mark {
				r.note("mark %#x -> %#x", r.pkt.Mark, v)
			}
			r.pkt.Mark = v
			return nil
		}
		r.ruleReadsMark = true
		return r.store(x.Register, hostU32(r.pkt.Mark))
	}
	return fmt.Errorf("meta key %d is not modelled", x.Key)
}

func (r *walkRun) cmp(x *expr.Cmp) error {
	if len(x.Data) == 0 || len(x.Data) > 16 {
		return fmt.Errorf("cmp of %d bytes", len(x.Data))
	}
	v, err := r.load(x.Register, len(x.Data))
	if err != nil {
		return err
	}
	d := bytes.Compare(v, x.Data)
	var ok bool
	switch x.Op {
	case expr.CmpOpEq:
		ok = d == 0
	case expr.CmpOpNeq:
		ok = d != 0
	case expr.CmpOpLt:
		ok = d < 0
	case expr.CmpOpLte:
		ok = d <= 0
	case expr.CmpOpGt:
		ok = d > 0
	case expr.CmpOpGte:
		ok = d >= 0
	default:
		return fmt.Errorf("cmp operator %d", x.Op)
	}
	if !ok {
		r.verdict.Kind = expr.VerdictBreak
	}
	return nil
}

func (r *walkRun) bitwise(x *expr.Bitwise) error {
	n := int(x.Len)
	if n == 0 || len(x.Mask) != n || len(x.Xor) != n {
		return fmt.Errorf("bitwise of %d bytes with a %d-byte mask and a %d-byte xor", n, len(x.Mask), len(x.Xor))
	}
	v, err := r.load(x.SourceRegister, n)
	if err != nil {
		return err
	}
	for k := range v {
		v[k] = v[k]&x.Mask[k] ^ x.Xor[k]
	}
	return r.store(x.DestRegister, v)
}

// findElement looks a key up in a set: its static elements, then what this walker and this run
// learnt for a dynamic set. It returns the element's data and, for a verdict map, its verdict.
func (r *walkRun) findElement(s *Set, key []byte) (found bool, data []byte, v expr.Verdict) {
	if e, ok := s.Elements[string(key)]; ok {
		if s.IsVerdictMap() {
			if e.Chain != "" {
				return true, nil, expr.Verdict{Kind: expr.VerdictGoto, Chain: e.Chain}
			}
			return true, nil, expr.Verdict{Kind: e.Verdict}
		}
		return true, e.Data, v
	}
	if !s.Dynamic {
		return false, nil, v
	}
	if d, ok := r.dynamic[s.Name][string(key)]; ok {
		return true, d, v
	}
	if d, ok := r.w.dynamic[s.Name][string(key)]; ok {
		return true, d, v
	}
	return false, nil, v
}

func (r *walkRun) lookup(x *expr.Lookup) error {
	s := r.w.sets[x.SetName]
	if s == nil {
		return fmt.Errorf("no set %q", x.SetName)
	}
	key, err := r.load(x.SourceRegister, kernelKeyLen(s))
	if err != nil {
		return err
	}
	r.ruleSets = append(r.ruleSets, s.Name)
	found, data, v := r.findElement(s, key)
	if found == x.Invert {
		r.note("%s not in @%s", FormatKey(s.Key, key), s.Name)
		r.verdict.Kind = expr.VerdictBreak
		return nil
	}
	if x.Invert || !x.IsDestRegSet {
		r.note("%s in @%s", FormatKey(s.Key, key), s.Name)
		return nil
	}
	if s.IsVerdictMap() {
		r.note("@%s: %s", s.Name, s.FormatElement(Element{Key: key, Chain: chainOf(v), Verdict: v.Kind}))
		r.verdict = v
		return nil
	}
	r.note("@%s: %s : %s", s.Name, FormatKey(s.Key, key), FormatKey(s.Data, data))
	return r.store(x.DestRegister, data)
}

func chainOf(v expr.Verdict) string {
	if v.Kind == expr.VerdictGoto || v.Kind == expr.VerdictJump {
		return v.Chain
	}
	return ""
}

// fib address types (RTN_*).
const (
	rtnUnicast   = 1
	rtnBroadcast = 3
	rtnMulticast = 5
)

func (r *walkRun) fib(x *expr.Fib) error {
	if !x.ResultADDRTYPE || x.ResultOIF || x.ResultOIFNAME || x.FlagIIF || x.FlagOIF || x.FlagMARK || x.FlagPRESENT ||
		x.FlagSADDR == x.FlagDADDR {
		return errors.New("only fib saddr type and fib daddr type are modelled")
	}
	a := r.pkt.Dst
	if x.FlagSADDR {
		a = r.pkt.Src
	}
	t := uint32(rtnUnicast)
	switch {
	case r.w.node.IsLocal(a):
		t = rtnLocal
	case a.IsMulticast():
		t = rtnMulticast
	case a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		t = rtnBroadcast
	}
	return r.store(x.Register, hostU32(t))
}

// conntrack status bits (IPS_*).
const (
	ipsSrcNAT    = 0x10
	ipsConfirmed = 0x08
)

func (r *walkRun) ct(x *expr.Ct) error {
	if x.SourceRegister {
		return errors.New("ct set is not modelled")
	}
	switch x.Key {
	case expr.CtKeySTATE:
		st := expr.CtStateBitNEW
		if r.pkt.Established {
			st = expr.CtStateBitESTABLISHED
		}
		return r.store(x.Register, hostU32(st))
	case expr.CtKeySTATUS:
		var st uint32
		if r.pkt.Established {
			st |= ipsConfirmed
		}
		if r.ctDNAT {
			st |= ctStatusDNAT
		}
		if r.ctSNAT {
			st |= ipsSrcNAT
		}
		return r.store(x.Register, hostU32(st))
	}
	return fmt.Errorf("ct key %d is not modelled", x.Key)
}

func (r *walkRun) numgen(x *expr.Numgen) error {
	if x.Type != unix.NFT_NG_RANDOM {
		return errors.New("only numgen random is modelled")
	}
	if x.Modulus == 0 {
		return errors.New("numgen modulus 0")
	}
	var v uint32
	if r.draws < len(r.choices) {
		v = r.choices[r.draws]
	} else {
		r.fresh = append(r.fresh, x.Modulus)
	}
	r.draws++
	r.out.Probability /= float64(x.Modulus)
	r.out.Draws = append(r.out.Draws, Draw{Chain: r.chain.Name, Rule: r.rule, Modulus: x.Modulus, Value: v + x.Offset})
	r.note("numgen %d of %d", v, x.Modulus)
	return r.store(x.Register, hostU32(v+x.Offset))
}

func (r *walkRun) dynset(x *expr.Dynset) error {
	s := r.w.sets[x.SetName]
	if s == nil {
		return fmt.Errorf("no set %q", x.SetName)
	}
	if x.Operation != unix.NFT_DYNSET_OP_ADD && x.Operation != unix.NFT_DYNSET_OP_UPDATE {
		return fmt.Errorf("dynset operation %d is not modelled", x.Operation)
	}
	if len(x.Exprs) > 0 {
		return errors.New("dynset with expressions is not modelled")
	}
	key, err := r.load(x.SrcRegKey, kernelKeyLen(s))
	if err != nil {
		return err
	}
	var data []byte
	if len(s.Data) > 0 {
		if data, err = r.load(x.SrcRegData, kernelDataLen(s)); err != nil {
			return err
		}
	}
	found, old, _ := r.findElement(s, key)
	u := SetUpdate{Set: s.Name, Key: key, Data: data, Timeout: x.Timeout, Added: !found}
	if found {
		u.Data = old // an update refreshes the timeout; the data stays
		r.note("refresh @%s %s", s.Name, FormatKey(s.Key, key))
	} else {
		if r.dynamic[s.Name] == nil {
			r.dynamic[s.Name] = map[string][]byte{}
		}
		r.dynamic[s.Name][string(key)] = data
		r.note("add @%s %s", s.Name, s.FormatElement(Element{Key: key, Data: data}))
	}
	r.out.Updates = append(r.out.Updates, u)
	if x.Invert {
		r.verdict.Kind = expr.VerdictBreak
	}
	return nil
}

func (r *walkRun) inNAT(hooks ...nftables.ChainHook) bool {
	if r.base == nil || r.base.Hook == nil || r.base.Hook.Type != nftables.ChainTypeNAT {
		return false
	}
	for _, h := range hooks {
		if r.hook == h {
			return true
		}
	}
	return false
}

func (r *walkRun) nat(x *expr.NAT) error {
	if x.Type != expr.NATTypeDestNAT {
		return errors.New("only dnat is modelled")
	}
	if x.Family != unix.NFPROTO_IPV4 {
		return fmt.Errorf("nat family %d in an ip table", x.Family)
	}
	if !r.inNAT(*nftables.ChainHookPrerouting, *nftables.ChainHookOutput) {
		return fmt.Errorf("dnat in %s, reached from %s: only nat prerouting and output chains may dnat", r.chain.Name, r.base.Name)
	}
	if x.Prefix || x.RegAddrMin == 0 {
		return errors.New("only dnat to an address (and port) in registers is modelled")
	}
	addr, err := r.load(x.RegAddrMin, 4)
	if err != nil {
		return err
	}
	if x.RegAddrMax != 0 {
		if max, err := r.load(x.RegAddrMax, 4); err != nil || !bytes.Equal(max, addr) {
			return errors.New("dnat to an address range is not modelled")
		}
	}
	port := r.pkt.DstPort
	if x.RegProtoMin != 0 {
		b, err := r.load(x.RegProtoMin, 2)
		if err != nil {
			return err
		}
		port = binary.BigEndian.Uint16(b)
		if x.RegProtoMax != 0 {
			if max, err := r.load(x.RegProtoMax, 2); err != nil || !bytes.Equal(max, b) {
				return errors.New("dnat to a port range is not modelled")
			}
		}
	}
	r.pkt.Dst = netip.AddrFrom4([4]byte(addr))
	r.pkt.DstPort = port
	r.out.DNAT = netip.AddrPortFrom(r.pkt.Dst, port)
	r.ctDNAT, r.natBound = true, true
	r.note("dnat to %s", r.out.DNAT)
	r.verdict.Kind = expr.VerdictAccept
	return nil
}

func (r *walkRun) masq(x *expr.Masq) error {
	if !r.inNAT(*nftables.ChainHookPostrouting) {
		return fmt.Errorf("masquerade in %s, reached from %s: only nat postrouting chains may masquerade", r.chain.Name, r.base.Name)
	}
	if x.ToPorts || x.RegProtoMin != 0 || x.RegProtoMax != 0 {
		return errors.New("masquerade to ports is not modelled")
	}
	reason := MasqByRule
	switch {
	case walkContains(r.ruleSets, SetHairpin):
		reason = MasqHairpin
	case r.ruleReadsMark:
		reason = MasqByMark
	}
	r.out.Masquerade = reason
	r.ctSNAT, r.natBound = true, true
	r.note("masquerade")
	r.verdict.Kind = expr.VerdictAccept
	return nil
}

func walkContains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

var icmpUnreachCodes = map[uint8]string{0: "net-unreachable", 1: "host-unreachable", 2: "prot-unreachable",
	3: "port-unreachable", 9: "net-prohibited", 10: "host-prohibited", 13: "admin-prohibited"}

func (r *walkRun) reject(x *expr.Reject) error {
	switch r.hook {
	case *nftables.ChainHookPrerouting, *nftables.ChainHookInput, *nftables.ChainHookForward, *nftables.ChainHookOutput:
	default:
		return fmt.Errorf("reject in %s, reached from %s in %s", r.chain.Name, r.base.Name, hookName(r.hook))
	}
	var kind string
	switch x.Type {
	case unix.NFT_REJECT_TCP_RST:
		if r.pkt.Proto != ProtoTCP {
			// nf_send_reset sends nothing for a packet that is not TCP; the packet is dropped.
			r.note("tcp reset for a %s packet: nothing is sent", protoName(r.pkt.Proto))
			r.verdict.Kind = expr.VerdictDrop
			return nil
		}
		kind = "tcp reset"
	case unix.NFT_REJECT_ICMP_UNREACH:
		name, ok := icmpUnreachCodes[x.Code]
		if !ok {
			return fmt.Errorf("icmp unreachable code %d", x.Code)
		}
		kind = "icmp " + name
	case unix.NFT_REJECT_ICMPX_UNREACH:
		name, ok := map[uint8]string{unix.NFT_REJECT_ICMPX_NO_ROUTE: "net-unreachable",
			unix.NFT_REJECT_ICMPX_PORT_UNREACH: "port-unreachable", unix.NFT_REJECT_ICMPX_HOST_UNREACH: "host-unreachable",
			unix.NFT_REJECT_ICMPX_ADMIN_PROHIBITED: "admin-prohibited"}[x.Code]
		if !ok {
			return fmt.Errorf("icmpx code %d", x.Code)
		}
		kind = "icmp " + name
	default:
		return fmt.Errorf("reject type %d", x.Type)
	}
	r.out.Verdict, r.out.Reject = VerdictReject, kind
	r.note("reject with %s", kind)
	r.verdict.Kind = expr.VerdictDrop
	return nil
}
