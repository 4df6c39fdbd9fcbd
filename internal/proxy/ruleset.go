package proxy

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// TableName is the nftables table (family ip) the proxy owns in each node's namespace.
const TableName = "podnet-proxy"

// MasqueradeMark is the packet mark bit a pick chain sets to ask postrouting to masquerade
// (kube-proxy's default bit, so operators recognise it).
const MasqueradeMark uint32 = 0x4000

// Names of the table's sets and maps.
const (
	SetServiceIPs          = "service-ips"            // daddr . proto . port  : goto pick chain
	SetServiceNodePorts    = "service-nodeports"      // proto . port          : goto pick chain
	SetServiceIPsPods      = "service-ips-pods"       // eTP=Local entries, for traffic from pods
	SetServiceNodePortsPod = "service-nodeports-pods" // eTP=Local NodePorts, for traffic from pods
	SetEndpoints           = "endpoints"              // entry . proto . port . slot : addr . port
	SetNoEndpointIPs       = "no-endpoint-ips"        // daddr . proto . port  : goto reject | drop
	SetNoEndpointNodePorts = "no-endpoint-nodeports"  // proto . port          : goto reject | drop
	SetClusterIPs          = "cluster-ips"            // every ClusterIP: other ports are rejected
	SetHairpin             = "hairpin"                // ep . ep for local endpoints: masquerade
	SetAffinity            = "affinity"               // saddr . entry . proto . port : addr . port, timeout
	ChainReject            = "reject"
)

// Views select which endpoint set a pick chain draws from: the slot a chain draws is
// view*ViewStride + (random mod N), so one endpoints map holds every view of every entry.
const (
	ViewInternal uint32 = 0 // ClusterIP: internalTrafficPolicy endpoints
	ViewExternal uint32 = 1 // NodePort, externalIPs, LB IPs: externalTrafficPolicy endpoints
	ViewPods     uint32 = 2 // eTP=Local entries reached from a pod: every cluster endpoint
	ViewStride   uint32 = 1 << 16
)

// Masq says when a pick chain marks a connection for masquerade.
type Masq int

const (
	MasqNever      Masq = iota // externalTrafficPolicy Local: keep the client's address
	MasqOffCluster             // ClusterIP: only clients outside the cluster CIDR
	MasqAlways                 // external entries with policy Cluster: the reply must come back here
)

// Pick describes a shared pick chain: every entry with the same endpoint count and behaviour
// jumps to the same chain, so adding a Service adds map elements, not chains.
type Pick struct {
	View     uint32
	N        int
	NodePort bool // the entry key's address is 0.0.0.0 (NodePorts match any local address)
	Masq     Masq
	Affinity int // ClientIP affinity timeout in seconds; 0 for none
}

// Name is the chain's name, e.g. pick-v1-n3-np-masq-aff10800.
func (p Pick) Name() string {
	var b strings.Builder
	fmt.Fprintf(&b, "pick-v%d-n%d", p.View, p.N)
	if p.NodePort {
		b.WriteString("-np")
	}
	switch p.Masq {
	case MasqOffCluster:
		b.WriteString("-masqoff")
	case MasqAlways:
		b.WriteString("-masq")
	}
	if p.Affinity > 0 {
		fmt.Fprintf(&b, "-aff%d", p.Affinity)
	}
	return b.String()
}

// Ruleset is the whole desired content of the proxy's table.
type Ruleset struct {
	Chains []*Chain // base chains first, then regular chains by name
	Sets   []*Set   // by name
}

// Chain is one chain and its rules.
type Chain struct {
	Name  string
	Hook  *Hook // nil for a regular chain
	Rules []Rule
}

// Hook makes a chain a base chain.
type Hook struct {
	Type     nftables.ChainType
	Hooknum  nftables.ChainHook
	Priority int32
}

// Rule is a rule's expressions, with the nft-style text they implement (for people and for the
// rule's fingerprint).
type Rule struct {
	Text  string
	Exprs []expr.Any
}

// Set is a set or map with its elements.
type Set struct {
	Name     string
	Key      []nftables.SetDatatype
	Data     []nftables.SetDatatype // nil: a set; {TypeVerdict}: a verdict map
	Dynamic  bool                   // updated from the packet path, with timeouts
	Elements map[string]Element     // by string(Key)
}

// IsVerdictMap says whether the set maps keys to verdicts.
func (s *Set) IsVerdictMap() bool {
	return len(s.Data) == 1 && s.Data[0].Name == nftables.TypeVerdict.Name
}

// KeyLen and DataLen are the register-padded lengths of a key and of a data value.
func (s *Set) KeyLen() int  { return paddedLen(s.Key) }
func (s *Set) DataLen() int { return paddedLen(s.Data) }

func paddedLen(ts []nftables.SetDatatype) int {
	n := 0
	for _, t := range ts {
		n += (int(t.Bytes) + 3) &^ 3
	}
	return n
}

// Element is one set element. For a verdict map, Chain names the goto target, or Verdict is a
// plain verdict (drop); for a data map, Data holds the value.
type Element struct {
	Key     []byte
	Data    []byte
	Chain   string
	Verdict expr.VerdictKind
}

func (e Element) same(o Element) bool {
	return bytes.Equal(e.Key, o.Key) && bytes.Equal(e.Data, o.Data) && e.Chain == o.Chain && e.Verdict == o.Verdict
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
func (r *Ruleset) Chain(name string) *Chain {
	for _, c := range r.Chains {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// Key encoding: every field is padded to 4 bytes, addresses and ports in network order, the
// slot (numgen's output) in host order.

func addrBytes(a netip.Addr) []byte { x := a.As4(); return x[:] }

func portBytes(p uint16) []byte { return []byte{byte(p >> 8), byte(p)} }

func hostU32(v uint32) []byte { b := make([]byte, 4); binary.NativeEndian.PutUint32(b, v); return b }

func entryKey(addr netip.Addr, proto uint8, port uint16) []byte {
	b := make([]byte, 12)
	a := addr.As4()
	copy(b, a[:])
	b[4] = proto
	binary.BigEndian.PutUint16(b[8:], port)
	return b
}

func nodePortKey(proto uint8, port uint16) []byte {
	b := make([]byte, 8)
	b[0] = proto
	binary.BigEndian.PutUint16(b[4:], port)
	return b
}

func endpointKey(entry netip.Addr, proto uint8, port uint16, slot uint32) []byte {
	b := make([]byte, 16)
	a := entry.As4()
	copy(b, a[:])
	b[4] = proto
	binary.BigEndian.PutUint16(b[8:], port)
	binary.NativeEndian.PutUint32(b[12:], slot)
	return b
}

func endpointData(e Endpoint) []byte {
	b := make([]byte, 8)
	a := e.Addr.As4()
	copy(b, a[:])
	binary.BigEndian.PutUint16(b[4:], e.Port)
	return b
}

// FormatKey shows an element's key (or data) the way nft would, from the set's types.
func FormatKey(types []nftables.SetDatatype, b []byte) string {
	var parts []string
	for _, t := range types {
		n := (int(t.Bytes) + 3) &^ 3
		if len(b) < n {
			parts = append(parts, fmt.Sprintf("?%x", b))
			break
		}
		v := b[:t.Bytes]
		switch t.Name {
		case nftables.TypeIPAddr.Name:
			parts = append(parts, netip.AddrFrom4([4]byte(v)).String())
		case nftables.TypeInetProto.Name:
			parts = append(parts, protoName(v[0]))
		case nftables.TypeInetService.Name:
			parts = append(parts, fmt.Sprint(binary.BigEndian.Uint16(v)))
		case nftables.TypeInteger.Name:
			parts = append(parts, fmt.Sprint(binary.NativeEndian.Uint32(v)))
		default:
			parts = append(parts, fmt.Sprintf("%x", v))
		}
		b = b[n:]
	}
	return strings.Join(parts, " . ")
}

// SortedElements returns a set's elements ordered by key, host-order integer fields compared
// as numbers.
func (s *Set) SortedElements() []Element {
	out := make([]Element, 0, len(s.Elements))
	for _, e := range s.Elements {
		out = append(out, e)
	}
	key := func(b []byte) []byte {
		c := append([]byte(nil), b...)
		off := 0
		for _, t := range s.Key {
			if t.Name == nftables.TypeInteger.Name && off+4 <= len(c) {
				binary.BigEndian.PutUint32(c[off:], binary.NativeEndian.Uint32(b[off:]))
			}
			off += (int(t.Bytes) + 3) &^ 3
		}
		return c
	}
	sort.Slice(out, func(i, j int) bool { return bytes.Compare(key(out[i].Key), key(out[j].Key)) < 0 })
	return out
}

// FormatElement shows one element as nft would.
func (s *Set) FormatElement(e Element) string {
	k := FormatKey(s.Key, e.Key)
	switch {
	case e.Chain != "":
		return k + " : goto " + e.Chain
	case s.IsVerdictMap():
		return k + " : " + verdictName(e.Verdict)
	case len(s.Data) > 0:
		return k + " : " + FormatKey(s.Data, e.Data)
	}
	return k
}

func verdictName(v expr.VerdictKind) string {
	switch v {
	case expr.VerdictDrop:
		return "drop"
	case expr.VerdictAccept:
		return "accept"
	case expr.VerdictReturn:
		return "return"
	}
	return fmt.Sprintf("verdict(%d)", v)
}

// Text shows one chain as nft would, with each rule's bytecode when asked.
func (c *Chain) Text(bytecode bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\tchain %s {\n", c.Name)
	if c.Hook != nil {
		fmt.Fprintf(&b, "\t\ttype %s hook %s priority %d; policy accept;\n", c.Hook.Type, hookName(c.Hook.Hooknum), c.Hook.Priority)
	}
	for _, rule := range c.Rules {
		fmt.Fprintf(&b, "\t\t%s\n", rule.Text)
		if bytecode {
			for _, line := range Bytecode(rule.Exprs) {
				fmt.Fprintf(&b, "\t\t\t%s\n", line)
			}
		}
	}
	b.WriteString("\t}\n")
	return b.String()
}

// Text shows the whole ruleset: chains with their rules' text and bytecode, then every set.
func (r *Ruleset) Text(bytecode bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "table ip %s {\n", TableName)
	for _, c := range r.Chains {
		b.WriteString(c.Text(bytecode))
	}
	for _, s := range r.Sets {
		kind := "set"
		if len(s.Data) > 0 {
			kind = "map"
		}
		fmt.Fprintf(&b, "\t%s %s {\n\t\ttype %s", kind, s.Name, typeNames(s.Key))
		if len(s.Data) > 0 {
			fmt.Fprintf(&b, " : %s", typeNames(s.Data))
		}
		b.WriteString("\n")
		if s.Dynamic {
			b.WriteString("\t\tflags dynamic,timeout\n")
		}
		for _, e := range s.SortedElements() {
			fmt.Fprintf(&b, "\t\t%s\n", s.FormatElement(e))
		}
		b.WriteString("\t}\n")
	}
	b.WriteString("}\n")
	return b.String()
}

func typeNames(ts []nftables.SetDatatype) string {
	var n []string
	for _, t := range ts {
		n = append(n, t.Name)
	}
	return strings.Join(n, " . ")
}

func hookName(h nftables.ChainHook) string {
	switch h {
	case *nftables.ChainHookPrerouting:
		return "prerouting"
	case *nftables.ChainHookInput:
		return "input"
	case *nftables.ChainHookForward:
		return "forward"
	case *nftables.ChainHookOutput:
		return "output"
	case *nftables.ChainHookPostrouting:
		return "postrouting"
	}
	return fmt.Sprint(h)
}
