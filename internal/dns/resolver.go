package dns

import (
	"net/netip"
	"strings"

	"github.com/miekg/dns"
)

type resultKind uint8

const (
	resForward  resultKind = iota // not the index's to answer: forward upstream
	resAnswer                     // set, or every set of node (ANY)
	resNoData                     // the name exists without the type
	resNXDomain                   // the name does not exist
	resServFail                   // a negative answer before the first sync
	resCNAME                      // node is an alias: answer its CNAME and follow the target
	resPod                        // a synthesised pod address record (addr)
	resRefused                    // a class other than IN in the cluster zone
)

type result struct {
	kind resultKind
	node *node
	set  *rrset
	addr netip.Addr
}

func (s *snapshot) inZone(name string) bool {
	z := s.zone
	return name == z || (len(name) > len(z) && name[len(name)-len(z)-1] == '.' && name[len(name)-len(z):] == z)
}

func isReverse(name string) bool {
	return strings.HasSuffix(name, ".in-addr.arpa.") || strings.HasSuffix(name, ".ip6.arpa.")
}

// lookup answers one question. name is a lowercased FQDN, shard its shardOf.
func (s *snapshot) lookup(name string, shard uint32, qtype, qclass uint16) result {
	if !s.inZone(name) {
		if qtype == dns.TypePTR && qclass == dns.ClassINET && isReverse(name) {
			if n := s.shards[shard][name]; n != nil {
				if set := n.find(dns.TypePTR); set != nil {
					return result{kind: resAnswer, node: n, set: set}
				}
			}
		}
		return result{kind: resForward}
	}
	if qclass != dns.ClassINET {
		return result{kind: resRefused}
	}
	n := s.apex
	if name != s.zone {
		n = s.shards[shard][name]
	}
	if n != nil {
		switch {
		case n.cname != nil && qtype != dns.TypeCNAME && qtype != dns.TypeANY:
			return result{kind: resCNAME, node: n}
		case qtype == dns.TypeANY && len(n.sets) > 0:
			return result{kind: resAnswer, node: n}
		}
		if set := n.find(qtype); set != nil {
			return result{kind: resAnswer, node: n, set: set}
		}
		return s.negative(resNoData)
	}
	if s.podMode == PodModeInsecure {
		if a, ok := s.podAddr(name); ok {
			if (qtype == dns.TypeA && a.Is4()) || (qtype == dns.TypeAAAA && a.Is6()) || qtype == dns.TypeANY {
				return result{kind: resPod, addr: a}
			}
			return s.negative(resNoData)
		}
	}
	return s.negative(resNXDomain)
}

func (s *snapshot) negative(k resultKind) result {
	if !s.ready {
		return result{kind: resServFail}
	}
	return result{kind: k}
}

// podAddr parses <ip-dashed>.<ns>.pod.<zone> for a namespace that exists.
func (s *snapshot) podAddr(name string) (netip.Addr, bool) {
	dot := strings.IndexByte(name, '.')
	if dot <= 0 {
		return netip.Addr{}, false
	}
	label, rest := name[:dot], name[dot+1:]
	// rest must be <ns>.pod.<zone> with one label for <ns>.
	suffix := len(rest) - len(s.zone) - len("pod.")
	if suffix < 2 || rest[suffix-1] != '.' || rest[suffix:suffix+4] != "pod." || rest[suffix+4:] != s.zone ||
		strings.IndexByte(rest[:suffix-1], '.') >= 0 {
		return netip.Addr{}, false
	}
	if s.get(rest) == nil {
		return netip.Addr{}, false
	}
	return undash(label)
}

// Resolver answers questions about the cluster zone from an Index, as dns.Msg values.
type Resolver struct {
	ix *Index
}

// NewResolver returns a Resolver over ix.
func NewResolver(ix *Index) *Resolver { return &Resolver{ix: ix} }

// maxChase bounds how many CNAMEs inside the zone one answer follows.
const maxChase = 8

// Resolve answers req's question from the index. It returns nil when the question is not the
// index's to answer — a name outside the cluster domain, or a reverse name it does not know —
// which the caller forwards upstream. An alias whose target lies outside the zone is answered with
// its CNAME only; following it is the caller's (the Server asks the Forwarder). The answer does
// not carry EDNS0: that is the transport's business. Records are copies; the caller may modify
// them.
func (r *Resolver) Resolve(req *dns.Msg) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(req)
	m.RecursionAvailable = true
	if len(req.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		return m
	}
	q := req.Question[0]
	name := strings.ToLower(dns.Fqdn(q.Name))
	snap := r.ix.snap.Load()
	res := snap.lookup(name, shardOf(name), q.Qtype, q.Qclass)
	if res.kind == resForward {
		return nil
	}
	m.Authoritative = res.kind != resRefused && res.kind != resServFail
	fill(m, snap, q.Name, q.Qtype, res, 0)
	return m
}

// fill adds one lookup result to m, the answers owned by owner (the question's spelling).
func fill(m *dns.Msg, snap *snapshot, owner string, qtype uint16, res result, depth int) {
	switch res.kind {
	case resAnswer:
		if res.set != nil {
			m.Answer = appendOwned(m.Answer, res.set.rrs, owner)
			m.Extra = appendCopies(m.Extra, res.set.extra)
			return
		}
		for _, set := range res.node.sets {
			m.Answer = appendOwned(m.Answer, set.rrs, owner)
		}
	case resPod:
		m.Answer = append(m.Answer, addrRR(owner, snap.ttl, res.addr))
	case resNoData:
		m.Ns = append(m.Ns, dns.Copy(snap.soa))
	case resNXDomain:
		m.Rcode = dns.RcodeNameError
		m.Ns = append(m.Ns, dns.Copy(snap.soa))
	case resServFail:
		m.Rcode = dns.RcodeServerFailure
	case resRefused:
		m.Rcode = dns.RcodeRefused
	case resCNAME:
		m.Answer = appendOwned(m.Answer, []dns.RR{res.node.cname}, owner)
		target := res.node.cname.Target
		lt := strings.ToLower(target)
		if depth >= maxChase || !snap.inZone(lt) {
			return
		}
		fill(m, snap, target, qtype, snap.lookup(lt, shardOf(lt), qtype, dns.ClassINET), depth+1)
	}
}

func appendOwned(dst, rrs []dns.RR, owner string) []dns.RR {
	for _, rr := range rrs {
		c := dns.Copy(rr)
		c.Header().Name = owner
		dst = append(dst, c)
	}
	return dst
}

func appendCopies(dst, rrs []dns.RR) []dns.RR {
	for _, rr := range rrs {
		dst = append(dst, dns.Copy(rr))
	}
	return dst
}

// externalTarget returns the target of the CNAME chain ending m's answer when it leaves the zone
// and the question wanted something else: the name the server still has to resolve upstream.
func externalTarget(m *dns.Msg, qtype uint16, snap *snapshot) (string, bool) {
	if qtype == dns.TypeCNAME || qtype == dns.TypeANY || m.Rcode != dns.RcodeSuccess || len(m.Answer) == 0 {
		return "", false
	}
	last, ok := m.Answer[len(m.Answer)-1].(*dns.CNAME)
	if !ok || snap.inZone(strings.ToLower(last.Target)) {
		return "", false
	}
	return last.Target, true
}
