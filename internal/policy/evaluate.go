package policy

import (
	"fmt"
	"net/netip"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Direction is Ingress or Egress.
type Direction string

// Directions.
const (
	Ingress Direction = "Ingress"
	Egress  Direction = "Egress"
)

// RuleMatch identifies the policy rule, peer and port entry that allowed a
// flow. Peer is -1 when the rule has no from/to (all peers); Port is -1 when
// the rule has no ports (all ports).
type RuleMatch struct {
	Policy PolicyRef
	Rule   int
	Peer   int
	Port   int
}

func (r RuleMatch) String() string {
	peer, port := fmt.Sprint(r.Peer), fmt.Sprint(r.Port)
	if r.Peer < 0 {
		peer = "any"
	}
	if r.Port < 0 {
		port = "any"
	}
	return fmt.Sprintf("%s rule[%d] peer[%s] port[%s]", r.Policy, r.Rule, peer, port)
}

// DirectionVerdict is the judgement for one direction: egress is judged at
// the source pod, ingress at the destination pod.
type DirectionVerdict struct {
	Direction Direction
	// Pod is the pod the direction is judged at, nil if that endpoint is not
	// a pod (then it is never isolated and Allowed is true).
	Pod *PodRef
	// Isolated: at least one policy selects Pod for this direction.
	Isolated bool
	Allowed  bool
	// AllowedBy lists every (policy, rule, peer, port) that allows the flow,
	// in policy (namespace/name), rule, peer, port order.
	AllowedBy []RuleMatch
	// IsolatedBy lists the policies that select Pod for this direction.
	IsolatedBy []PolicyRef
	// Checked is every rule of those policies with what of it matched, in the same order as
	// AllowedBy: for a denied flow it says how close each rule came.
	Checked []RuleCheck
}

// RuleCheck is one rule of an isolating policy, judged against a flow: a rule allows the flow
// when both its peer and its port match.
type RuleCheck struct {
	Policy PolicyRef
	Rule   int
	// PeerMatch: a from/to entry (or the absence of any) matches the other end.
	PeerMatch bool
	// PortMatch: a ports entry (or the absence of any) matches the protocol and port.
	PortMatch bool
	// Allows: the rule allows the flow (PeerMatch and PortMatch, and not a named port
	// towards an ipBlock peer).
	Allows bool
}

// Verdict is the result of Evaluate.
type Verdict struct {
	Src, Dst netip.Addr
	Protocol corev1.Protocol
	Port     uint16
	Allowed  bool
	Egress   DirectionVerdict
	Ingress  DirectionVerdict
}

// Evaluate judges a new connection from src to dst (after Service DNAT).
// Replies of allowed connections are not subject to this evaluation.
func (m *Model) Evaluate(src, dst netip.Addr, proto corev1.Protocol, port uint16) Verdict {
	src, dst = src.Unmap(), dst.Unmap()
	if proto == "" {
		proto = corev1.ProtocolTCP
	}
	srcPod, dstPod := m.byIP[src], m.byIP[dst]
	v := Verdict{Src: src, Dst: dst, Protocol: proto, Port: port}

	v.Egress = DirectionVerdict{Direction: Egress, Allowed: true}
	if srcPod != nil {
		ref := srcPod.Ref
		v.Egress.Pod = &ref
		v.Egress.judge(srcPod.EgressPolicies, false, dst, dstPod, proto, port, dstPod)
	}
	v.Ingress = DirectionVerdict{Direction: Ingress, Allowed: true}
	if dstPod != nil {
		ref := dstPod.Ref
		v.Ingress.Pod = &ref
		v.Ingress.judge(dstPod.IngressPolicies, true, src, srcPod, proto, port, dstPod)
	}
	v.Allowed = v.Egress.Allowed && v.Ingress.Allowed
	return v
}

// judge evaluates the rules of pols; peer is the other endpoint (peerPod if
// it is a pod) and dstPod the destination used to resolve named ports.
func (d *DirectionVerdict) judge(pols []*Policy, ingress bool, peer netip.Addr, peerPod *Pod, proto corev1.Protocol, port uint16, dstPod *Pod) {
	if len(pols) == 0 {
		return
	}
	d.Isolated = true
	for _, pol := range pols {
		d.IsolatedBy = append(d.IsolatedBy, pol.Ref)
		rules := pol.EgressRules
		if ingress {
			rules = pol.IngressRules
		}
		for _, r := range rules {
			var peers []*Peer // nil entry = all peers
			if r.AllPeers {
				peers = []*Peer{nil}
			}
			for _, p := range r.Peers {
				if p.matches(peer, peerPod) {
					peers = append(peers, p)
				}
			}
			var ports []*Port // nil entry = all ports
			if r.AllPorts {
				ports = []*Port{nil}
			}
			for _, pt := range r.Ports {
				if pt.Matches(proto, port, dstPod) {
					ports = append(ports, pt)
				}
			}
			before := len(d.AllowedBy)
			for _, pe := range peers {
				for _, po := range ports {
					// An egress named port resolves per peer pod; towards an
					// ipBlock peer it matches nothing (as upstream).
					if !ingress && pe != nil && pe.IPBlock != nil && po != nil && po.Name != "" {
						continue
					}
					rm := RuleMatch{Policy: pol.Ref, Rule: r.Index, Peer: -1, Port: -1}
					if pe != nil {
						rm.Peer = pe.Index
					}
					if po != nil {
						rm.Port = po.Index
					}
					d.AllowedBy = append(d.AllowedBy, rm)
				}
			}
			d.Checked = append(d.Checked, RuleCheck{Policy: pol.Ref, Rule: r.Index,
				PeerMatch: len(peers) > 0, PortMatch: len(ports) > 0, Allows: len(d.AllowedBy) > before})
		}
	}
	d.Allowed = len(d.AllowedBy) > 0
}

func (p *Peer) matches(a netip.Addr, pod *Pod) bool {
	switch {
	case p.Invalid:
		return false
	case p.IPBlock != nil:
		return p.IPBlock.Contains(a)
	default:
		return pod != nil && p.podSet[pod]
	}
}

// Explain renders the verdict as human-readable lines.
func (v Verdict) Explain() string {
	var b strings.Builder
	verdict := "DENY"
	if v.Allowed {
		verdict = "ALLOW"
	}
	fmt.Fprintf(&b, "%s %s -> %s %s/%d\n", verdict, v.Src, v.Dst, v.Protocol, v.Port)
	for _, d := range []DirectionVerdict{v.Egress, v.Ingress} {
		d.explain(&b, v.Protocol, v.Port)
	}
	return b.String()
}

func (d DirectionVerdict) explain(b *strings.Builder, proto corev1.Protocol, port uint16) {
	at := "source"
	if d.Direction == Ingress {
		at = "destination"
	}
	if d.Pod == nil {
		fmt.Fprintf(b, "  %s: allow (%s is not a pod; never isolated)\n", d.Direction, at)
		return
	}
	dir := strings.ToLower(string(d.Direction))
	if !d.Isolated {
		fmt.Fprintf(b, "  %s: allow (%s pod %s is not isolated for %s: no policy selects it)\n", d.Direction, at, d.Pod, dir)
		return
	}
	names := make([]string, len(d.IsolatedBy))
	for i, p := range d.IsolatedBy {
		names[i] = p.String()
	}
	if d.Allowed {
		fmt.Fprintf(b, "  %s: allow (%s pod %s isolated by %s)\n", d.Direction, at, d.Pod, strings.Join(names, ", "))
		field, peerWord := "ingress", "from"
		if d.Direction == Egress {
			field, peerWord = "egress", "to"
		}
		for _, r := range d.AllowedBy {
			peer, port := fmt.Sprintf("%s[%d]", peerWord, r.Peer), fmt.Sprintf("ports[%d]", r.Port)
			if r.Peer < 0 {
				peer = "no " + peerWord + " (any peer)"
			}
			if r.Port < 0 {
				port = "no ports (any port)"
			}
			fmt.Fprintf(b, "    allowed by %s spec.%s[%d]: %s, %s\n", r.Policy, field, r.Rule, peer, port)
		}
		return
	}
	fmt.Fprintf(b, "  %s: deny (%s pod %s isolated by %s; no rule allows this traffic)\n",
		d.Direction, at, d.Pod, strings.Join(names, ", "))
	field, peerWord := "ingress", "from"
	if d.Direction == Egress {
		field, peerWord = "egress", "to"
	}
	for _, pol := range d.IsolatedBy {
		n := 0
		for _, c := range d.Checked {
			if c.Policy != pol {
				continue
			}
			n++
			var why []string
			if c.PeerMatch {
				why = append(why, peerWord+" matches")
			} else {
				why = append(why, peerWord+" does not match")
			}
			if c.PortMatch {
				why = append(why, "ports match")
			} else {
				why = append(why, fmt.Sprintf("ports do not match %s/%d", proto, port))
			}
			if c.PeerMatch && c.PortMatch {
				why = []string{"a named port never matches an ipBlock peer"}
			}
			fmt.Fprintf(b, "    %s spec.%s[%d]: %s\n", pol, field, c.Rule, strings.Join(why, ", "))
		}
		if n == 0 {
			fmt.Fprintf(b, "    %s: no %s rules (denies all %s)\n", pol, field, dir)
		}
	}
}

// Matrix returns the reachability matrix out[i][j] = pods[i] may connect to
// pods[j] on proto/port. The first IP of the destination of the source's
// family is used; missing pods yield false.
func (m *Model) Matrix(pods []PodRef, proto corev1.Protocol, port uint16) [][]bool {
	out := make([][]bool, len(pods))
	for i, from := range pods {
		out[i] = make([]bool, len(pods))
		fp := m.byRef[from]
		if fp == nil {
			continue
		}
		for j, to := range pods {
			tp := m.byRef[to]
			if tp == nil {
				continue
			}
			src, dst, ok := sameFamily(fp.IPs, tp.IPs)
			if !ok {
				continue
			}
			out[i][j] = m.Evaluate(src, dst, proto, port).Allowed
		}
	}
	return out
}

func sameFamily(a, b []netip.Addr) (netip.Addr, netip.Addr, bool) {
	for _, x := range a {
		for _, y := range b {
			if x.Is4() == y.Is4() {
				return x, y, true
			}
		}
	}
	return netip.Addr{}, netip.Addr{}, false
}

// FormatMatrix renders a matrix like the upstream netpol e2e tests:
// "." for allowed and "X" for denied, rows are sources, columns destinations.
func FormatMatrix(pods []PodRef, mat [][]bool) string {
	var b strings.Builder
	b.WriteString("-")
	for _, p := range pods {
		b.WriteString("\t" + p.String())
	}
	b.WriteString("\n")
	for i, p := range pods {
		b.WriteString(p.String())
		for j := range pods {
			c := "X"
			if i < len(mat) && j < len(mat[i]) && mat[i][j] {
				c = "."
			}
			b.WriteString("\t" + c)
		}
		b.WriteString("\n")
	}
	return b.String()
}
