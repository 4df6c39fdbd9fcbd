package policy

import (
	"bytes"
	"encoding/binary"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/nftables/expr"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
)

// Regenerate with: go test ./internal/policy/ -run TestRenderGolden -updatePolicyGolden
var updatePolicyGolden = flag.Bool("updatePolicyGolden", false, "rewrite the policy golden files in testdata/")

// The node under test holds x/a, x/b and y/a.
func localIPs() []netip.Addr {
	return []netip.Addr{
		netip.MustParseAddr(podIP("x", "a")), netip.MustParseAddr(podIP("x", "b")), netip.MustParseAddr(podIP("y", "a")),
	}
}

type renderCase struct {
	name string
	pols []*networkingv1.NetworkPolicy
}

// caseCIDRs are the node's pod CIDRs in the golden cases that show them.
var caseCIDRs = map[string][]netip.Prefix{
	"fail-closed": {netip.MustParsePrefix("10.0.0.0/24"), netip.MustParsePrefix("10.0.1.0/24")},
}

func renderCases() []renderCase {
	return []renderCase{
		{"default-deny-ingress", []*networkingv1.NetworkPolicy{np("x", "deny", all(), types(tIn))}},
		{"allow-from-podselector", []*networkingv1.NetworkPolicy{
			np("x", "allow-b", labelsSel("pod", "a"), ingress(rule{peers: peers(podPeer(labelsSel("pod", "b")))})),
		}},
		{"namespace-and-pod", []*networkingv1.NetworkPolicy{
			np("x", "ns-and-pod", labelsSel("pod", "a"), ingress(rule{
				peers: peers(nsPodPeer(labelsSel("ns", "y"), labelsSel("pod", "c"))),
				ports: ports(numPort(tcp, 80)),
			})),
		}},
		{"ipblock-except", []*networkingv1.NetworkPolicy{
			np("x", "cidr", all(), ingress(rule{peers: peers(cidrPeer("10.0.0.0/16", "10.0.1.0/24", "10.0.2.2/32"))})),
		}},
		{"named-port", []*networkingv1.NetworkPolicy{
			np("x", "named-in", labelsSel("pod", "a"), ingress(rule{ports: ports(namedPort(tcp, "serve-81-tcp"))})),
			np("y", "named-out", labelsSel("pod", "a"), types(tEg), egress(rule{
				peers: peers(nsPeer(labelsSel("ns", "z")), cidrPeer("10.0.0.0/8")),
				ports: ports(namedPort(udp, "serve-80-udp")),
			})),
		}},
		{"endport", []*networkingv1.NetworkPolicy{
			np("x", "range", all(), ingress(rule{ports: ports(rangePort(tcp, 80, 81), protoOnly(udp), numPort(sctp, 80))})),
		}},
		{"egress-deny", []*networkingv1.NetworkPolicy{np("x", "deny-out", all(), types(tEg))}},
		{"fail-closed", []*networkingv1.NetworkPolicy{np("x", "deny", all(), types(tIn))}},
	}
}

func TestRenderGolden(t *testing.T) {
	for _, c := range renderCases() {
		t.Run(c.name, func(t *testing.T) {
			m := Compile(c.pols, basePods(), baseNamespaces())
			got := Render(m, NodeInfo{LocalPodIPs: localIPs(), PodCIDRs: caseCIDRs[c.name]}).Text(true)
			path := filepath.Join("testdata", c.name+".golden")
			if *updatePolicyGolden {
				if err := os.MkdirAll("testdata", 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -updatePolicyGolden)", err)
			}
			if string(want) != got {
				t.Errorf("%s differs from the rendering; got:\n%s", path, got)
			}
		})
	}
}

// Rendering is deterministic and does not depend on policy order.
func TestRenderOrderIndependent(t *testing.T) {
	var pols []*networkingv1.NetworkPolicy
	for _, c := range renderCases() {
		pols = append(pols, c.pols...)
	}
	a := Render(Compile(pols, basePods(), baseNamespaces()), NodeInfo{LocalPodIPs: localIPs()}).Text(true)
	for i, j := 0, len(pols)-1; i < j; i, j = i+1, j-1 {
		pols[i], pols[j] = pols[j], pols[i]
	}
	b := Render(Compile(pols, basePods(), baseNamespaces()), NodeInfo{LocalPodIPs: localIPs()}).Text(true)
	if a != b {
		t.Fatal("rendering depends on policy order")
	}
}

// --- a tiny interpreter of the rendered bytecode ---

type packet struct {
	src, dst netip.Addr
	proto    uint8
	dport    uint16
	ctState  uint32
}

// walk runs the packet through the forward chain and reports whether it is accepted.
func walk(t *testing.T, rs *Ruleset, p packet) bool {
	t.Helper()
	accept, ok := runChain(t, rs, ChainForward, p, 0)
	if !ok {
		return true // fell off the base chain: policy accept
	}
	return accept
}

// runChain returns (accepted, final): final is false when the chain returned.
func runChain(t *testing.T, rs *Ruleset, name string, p packet, depth int) (bool, bool) {
	if depth > 8 {
		t.Fatal("jump loop")
	}
	c := rs.Chain(name)
	if c == nil {
		t.Fatalf("no chain %s", name)
	}
	th := make([]byte, 4)
	binary.BigEndian.PutUint16(th[2:], p.dport)
rules:
	for _, r := range c.Rules {
		regs := map[uint32][]byte{}
		for _, e := range r.Exprs {
			switch x := e.(type) {
			case *expr.Payload:
				var src []byte
				switch {
				case x.Base == expr.PayloadBaseNetworkHeader && x.Offset == 12:
					a := p.src.As4()
					src = a[:]
				case x.Base == expr.PayloadBaseNetworkHeader && x.Offset == 16:
					a := p.dst.As4()
					src = a[:]
				case x.Base == expr.PayloadBaseTransportHeader:
					src = th[x.Offset : x.Offset+x.Len]
				default:
					t.Fatalf("payload %+v", x)
				}
				v := make([]byte, 4)
				copy(v, src)
				regs[x.DestRegister] = v
			case *expr.Meta:
				if x.Key != expr.MetaKeyL4PROTO {
					t.Fatalf("meta %+v", x)
				}
				regs[x.Register] = []byte{p.proto, 0, 0, 0}
			case *expr.Ct:
				regs[x.Register] = hostU32(p.ctState)
			case *expr.Bitwise:
				v := make([]byte, 4)
				for i := range v {
					v[i] = regs[x.SourceRegister][i]&x.Mask[i] ^ x.Xor[i]
				}
				regs[x.DestRegister] = v
			case *expr.Cmp:
				eq := bytes.Equal(regs[x.Register][:len(x.Data)], x.Data)
				if (x.Op == expr.CmpOpEq) != eq {
					continue rules
				}
			case *expr.Lookup:
				s := rs.Set(x.SetName)
				var key []byte
				for i := range s.Key {
					key = append(key, regs[x.SourceRegister+uint32(i)]...)
				}
				if inSet(s, key) == x.Invert {
					continue rules
				}
			case *expr.Limit, *expr.Log:
				// the log is rate-limited; the verdict is not
			case *expr.Verdict:
				switch x.Kind {
				case expr.VerdictAccept:
					return true, true
				case expr.VerdictDrop:
					return false, true
				case expr.VerdictReturn:
					return false, false
				case expr.VerdictJump:
					if acc, final := runChain(t, rs, x.Chain, p, depth+1); final {
						return acc, true
					}
				default:
					t.Fatalf("verdict %+v", x)
				}
			default:
				t.Fatalf("expression %T", e)
			}
		}
	}
	return false, false
}

func inSet(s *Set, key []byte) bool {
	if !s.Interval {
		_, ok := s.Elements[string(key)]
		return ok
	}
	for _, e := range s.Elements {
		in := true
		for off := 0; off < len(key); off += 4 {
			if bytes.Compare(key[off:off+4], e.Key[off:off+4]) < 0 || bytes.Compare(key[off:off+4], e.KeyEnd[off:off+4]) > 0 {
				in = false
				break
			}
		}
		if in {
			return true
		}
	}
	return false
}

// Elements of an interval set must be disjoint: the kernel refuses one whose start or end lies
// inside another.
func checkDisjoint(t *testing.T, s *Set) {
	t.Helper()
	els := s.SortedElements()
	for i := range els {
		for j := i + 1; j < len(els); j++ {
			a, b := els[i], els[j]
			overlap := true
			for off := 0; off < len(a.Key); off += 4 {
				if bytes.Compare(a.KeyEnd[off:off+4], b.Key[off:off+4]) < 0 || bytes.Compare(b.KeyEnd[off:off+4], a.Key[off:off+4]) < 0 {
					overlap = false
					break
				}
			}
			if overlap {
				t.Errorf("set %s: %s overlaps %s", s.Name, s.FormatElement(a), s.FormatElement(b))
			}
		}
	}
}

// The rendered table, run packet by packet, agrees with Model.Evaluate for the directions this
// node judges: egress when the source is local, ingress when the destination is.
func TestRenderMatchesEvaluate(t *testing.T) {
	extra := [][]*networkingv1.NetworkPolicy{
		{ // overlapping rules across policies, both directions
			np("x", "in-a", labelsSel("pod", "a"), ingress(
				rule{peers: peers(nsPeer(labelsSel("ns", "y"))), ports: ports(numPort(tcp, 80), numPort(udp, 81))},
				rule{peers: peers(podPeer(all())), ports: ports(rangePort(tcp, 79, 81))},
			)),
			np("x", "in-all", all(), ingress(rule{peers: peers(cidrPeer("10.0.1.0/24", "10.0.1.2/32"))})),
			np("x", "out", all(), types(tEg), egress(
				rule{peers: peers(cidrPeer("0.0.0.0/0", "10.0.0.0/8")), ports: ports(numPort(tcp, 443))},
				rule{ports: ports(namedPort(tcp, "serve-80-tcp"))},
				rule{peers: peers(nsPodPeer(all(), labelsSel("pod", "b")))},
			)),
			np("y", "y-in", all(), ingress(rule{ports: ports(protoOnly(sctp))})),
		},
		{ // allow-all ingress and egress next to deny-all
			np("x", "deny", all(), types(tIn, tEg)),
			np("x", "allow", labelsSel("pod", "b"), types(tIn, tEg), ingress(rule{}), egress(rule{})),
		},
	}
	var models [][]*networkingv1.NetworkPolicy
	for _, c := range renderCases() {
		models = append(models, c.pols)
	}
	models = append(models, extra...)

	var addrs []netip.Addr
	for _, ns := range nsNames {
		for _, p := range podNames {
			addrs = append(addrs, netip.MustParseAddr(podIP(ns, p)))
		}
	}
	for _, s := range []string{"10.0.1.9", "10.1.0.1", "192.168.1.1"} {
		addrs = append(addrs, netip.MustParseAddr(s))
	}
	protos := []corev1.Protocol{tcp, udp, sctp, "ICMP"}
	protoNum := map[corev1.Protocol]uint8{tcp: 6, udp: 17, sctp: 132, "ICMP": 1}
	portGrid := []uint16{79, 80, 81, 82, 443}
	local := map[netip.Addr]bool{}
	for _, a := range localIPs() {
		local[a] = true
	}

	for mi, pols := range models {
		m := Compile(pols, basePods(), baseNamespaces())
		rs := Render(m, NodeInfo{LocalPodIPs: localIPs()})
		checkDisjoint(t, rs.Set(SetEgressAllow))
		checkDisjoint(t, rs.Set(SetIngressAllow))
		n := 0
		for _, src := range addrs {
			for _, dst := range addrs {
				for _, proto := range protos {
					for _, port := range portGrid {
						v := m.Evaluate(src, dst, proto, port)
						want := true
						if local[src] && !v.Egress.Allowed {
							want = false
						}
						if local[dst] && !v.Ingress.Allowed {
							want = false
						}
						p := packet{src: src, dst: dst, proto: protoNum[proto], dport: port, ctState: expr.CtStateBitNEW}
						if got := walk(t, rs, p); got != want {
							t.Errorf("model %d: %s -> %s %s/%d: rendered %v, Evaluate %v\n%s", mi, src, dst, proto, port, got, want, v.Explain())
						}
						// Replies of any connection pass.
						p.ctState = expr.CtStateBitESTABLISHED
						if !walk(t, rs, p) {
							t.Errorf("model %d: established %s -> %s dropped", mi, src, dst)
						}
						n++
					}
				}
			}
		}
		if testing.Verbose() {
			t.Logf("model %d: %d flows, %d egress + %d ingress elements", mi, n,
				len(rs.Set(SetEgressAllow).Elements), len(rs.Set(SetIngressAllow).Elements))
		}
	}
}

func TestNormaliseMerges(t *testing.T) {
	got := normalise([]box{
		{1, 1, 6, 6, 80, 80}, {2, 2, 6, 6, 80, 80}, {1, 2, 6, 6, 81, 90}, {3, 3, 0, 255, 0, 65535},
	})
	want := []box{{1, 2, 6, 6, 80, 90}, {3, 3, 0, 255, 0, 65535}}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
}

// Fail closed: with the node's pod CIDRs given, an address in them that is not a known local pod
// (a pod the table was not rendered for yet) can neither send nor receive a new connection,
// policies or not, while known pods keep exactly their policies' verdicts.
func TestRenderFailClosed(t *testing.T) {
	cidrs := caseCIDRs["fail-closed"]
	local := map[netip.Addr]bool{}
	for _, a := range localIPs() {
		local[a] = true
	}
	pending := []netip.Addr{netip.MustParseAddr(podIP("x", "c")), netip.MustParseAddr("10.0.0.200"), netip.MustParseAddr(podIP("y", "b"))}
	others := append(localIPs(), netip.MustParseAddr(podIP("z", "a")), netip.MustParseAddr("192.168.1.1"))
	for _, pols := range [][]*networkingv1.NetworkPolicy{
		nil,
		{np("x", "deny", all(), types(tIn))},
		{np("x", "allow-all", all(), types(tIn, tEg), ingress(rule{}), egress(rule{}))},
	} {
		m := Compile(pols, basePods(), baseNamespaces())
		rs := Render(m, NodeInfo{LocalPodIPs: localIPs(), PodCIDRs: cidrs})
		for _, p := range pending {
			for _, o := range others {
				for _, pk := range []packet{{src: p, dst: o, proto: 6, dport: 80}, {src: o, dst: p, proto: 6, dport: 80}, {src: p, dst: o, proto: 1}} {
					pk.ctState = expr.CtStateBitNEW
					if walk(t, rs, pk) {
						t.Errorf("%d policies: new %s -> %s accepted, but %s is not a known pod", len(pols), pk.src, pk.dst, p)
					}
				}
			}
		}
		for _, src := range others {
			for _, dst := range others {
				v := m.Evaluate(src, dst, tcp, 80)
				want := (!local[src] || v.Egress.Allowed) && (!local[dst] || v.Ingress.Allowed)
				if got := walk(t, rs, packet{src: src, dst: dst, proto: 6, dport: 80, ctState: expr.CtStateBitNEW}); got != want {
					t.Errorf("%d policies: %s -> %s: rendered %v, Evaluate %v", len(pols), src, dst, got, want)
				}
			}
		}
	}
}
