package dns

import (
	"encoding/binary"

	"github.com/miekg/dns"
)

// nShards splits the name map so that an update copies only the shards it touches.
const nShards = 256

// snapshot is one immutable state of the index; readers load it with one atomic pointer read.
type snapshot struct {
	shards  [nShards]map[string]*node
	zone    string
	ttl     uint32
	podMode PodMode
	ready   bool
	soa     *dns.SOA
	soaWire []byte // the SOA with its full owner name, for the authority section
	apex    *node
}

const (
	fnvOffset = 2166136261
	fnvPrime  = 16777619
)

func shardOf(name string) uint32 {
	h := uint32(fnvOffset)
	for i := 0; i < len(name); i++ {
		h = (h ^ uint32(name[i])) * fnvPrime
	}
	return h % nShards
}

func (s *snapshot) get(name string) *node { return s.shards[shardOf(name)][name] }

// node is one name: its RRsets, and its CNAME target if it is an alias.
type node struct {
	sets  []*rrset
	cname *dns.CNAME
}

func (n *node) find(t uint16) *rrset {
	for _, s := range n.sets {
		if s.qtype == t {
			return s
		}
	}
	return nil
}

// rrset is one RRset of a node, as miekg records and pre-packed for the wire.
type rrset struct {
	qtype uint16
	rrs   []dns.RR
	extra []dns.RR
	// wire holds the records with their owner name compressed to a pointer at the question
	// (offset 12), so they answer any spelling of the name without repacking.
	wire      []byte
	extraWire []byte
	// recLen is the wire length shared by every record when there are several (A, AAAA), so that
	// the server can rotate them; 0 otherwise.
	recLen int
}

func (s *rrset) pack() {
	s.wire = s.wire[:0]
	same := len(s.rrs) > 1
	for i, rr := range s.rrs {
		b := packAtQuestion(rr)
		if i == 0 {
			s.recLen = len(b)
		} else if len(b) != s.recLen {
			same = false
		}
		s.wire = append(s.wire, b...)
	}
	if !same {
		s.recLen = 0
	}
	s.extraWire = nil
	for _, rr := range s.extra {
		s.extraWire = append(s.extraWire, packFull(rr)...)
	}
}

// packFull packs one record with its owner name, uncompressed. It packs a copy: dns.PackRR
// writes the Rdlength of what it packs, and published records are read concurrently.
func packFull(rr dns.RR) []byte {
	rr = dns.Copy(rr)
	buf := make([]byte, dns.Len(rr)+16)
	n, err := dns.PackRR(rr, buf, 0, nil, false)
	if err != nil {
		panic("dns: cannot pack " + rr.String() + ": " + err.Error())
	}
	return buf[:n]
}

// packAtQuestion packs one record with its owner replaced by a compression pointer to the
// question name at offset 12.
func packAtQuestion(rr dns.RR) []byte {
	c := dns.Copy(rr)
	c.Header().Name = "."
	b := packFull(c) // starts with the root label, one zero byte
	return append([]byte{0xc0, 0x0c}, b[1:]...)
}

// DNS header flag bits.
const (
	flagQR     = 0x8000
	flagOpcode = 0x7800
	flagAA     = 0x0400
	flagTC     = 0x0200
	flagRD     = 0x0100
	flagRA     = 0x0080
	flagCD     = 0x0010
	headerLen  = 12
	maxNameLen = 255
	optLen     = 11
	typeOPT    = 41
)

// wireQuery is what the fast path needs from a query.
type wireQuery struct {
	id      uint16
	flags   uint16
	qend    int // end of the question section
	qtype   uint16
	qclass  uint16
	edns    bool
	udpSize uint16
	do      bool
}

// parseQuery reads a plain query — QUERY opcode, one question, no answer or authority records,
// at most one OPT record of EDNS version 0 — writing the lowercased question name (dotted, with
// the final dot) into name. It returns the name's length and its shard hash. ok is false for
// anything else, including names with characters that would need escaping: those take the
// dns.Msg path.
func parseQuery(req []byte, name *[maxNameLen + 1]byte) (q wireQuery, n int, hash uint32, ok bool) {
	if len(req) < headerLen+5 {
		return q, 0, 0, false
	}
	flags := binary.BigEndian.Uint16(req[2:])
	if flags&(flagQR|flagOpcode) != 0 ||
		binary.BigEndian.Uint16(req[4:]) != 1 || binary.BigEndian.Uint16(req[6:]) != 0 || binary.BigEndian.Uint16(req[8:]) != 0 {
		return q, 0, 0, false
	}
	ar := binary.BigEndian.Uint16(req[10:])
	if ar > 1 {
		return q, 0, 0, false
	}
	h := uint32(fnvOffset)
	off := headerLen
	for {
		if off >= len(req) {
			return q, 0, 0, false
		}
		l := int(req[off])
		off++
		if l == 0 {
			break
		}
		if l > 63 || off+l > len(req) || n+l+1 >= maxNameLen {
			return q, 0, 0, false
		}
		for _, c := range req[off : off+l] {
			switch {
			case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
			case c >= 'A' && c <= 'Z':
				c += 'a' - 'A'
			default:
				return q, 0, 0, false
			}
			name[n] = c
			n++
			h = (h ^ uint32(c)) * fnvPrime
		}
		name[n] = '.'
		n++
		h = (h ^ '.') * fnvPrime
		off += l
	}
	if n == 0 || off+4 > len(req) {
		return q, 0, 0, false
	}
	q.qtype = binary.BigEndian.Uint16(req[off:])
	q.qclass = binary.BigEndian.Uint16(req[off+2:])
	off += 4
	q.qend = off
	if ar == 1 {
		if off+optLen > len(req) || req[off] != 0 || binary.BigEndian.Uint16(req[off+1:]) != typeOPT || req[off+6] != 0 {
			return q, 0, 0, false
		}
		q.edns = true
		q.udpSize = binary.BigEndian.Uint16(req[off+3:])
		q.do = req[off+7]&0x80 != 0
		off += optLen + int(binary.BigEndian.Uint16(req[off+9:]))
	}
	if off != len(req) {
		return q, 0, 0, false
	}
	q.id = binary.BigEndian.Uint16(req)
	q.flags = flags
	return q, n, h % nShards, true
}

// appendResponse writes a whole response after out: the header, the query's own question bytes
// (so the answer repeats the client's spelling), then the sections. rot rotates a set whose
// records share one length.
// withExtra includes the answer's Additional records.
func appendResponse(out, req []byte, q *wireQuery, rcode int, aa bool, answer *rrset, withExtra bool, rot uint32, dyn []byte, authority []byte, ourUDPSize uint16) []byte {
	flags := uint16(flagQR|flagRA) | q.flags&(flagRD|flagCD) | uint16(rcode&0xf)
	if aa {
		flags |= flagAA
	}
	var an, ar uint16
	if answer != nil {
		an = uint16(len(answer.rrs))
		if withExtra {
			ar = uint16(len(answer.extra))
		}
	}
	if dyn != nil {
		an = 1
	}
	var ns uint16
	if authority != nil {
		ns = 1
	}
	if q.edns {
		ar++
	}
	out = binary.BigEndian.AppendUint16(out, q.id)
	out = binary.BigEndian.AppendUint16(out, flags)
	out = binary.BigEndian.AppendUint16(out, 1)
	out = binary.BigEndian.AppendUint16(out, an)
	out = binary.BigEndian.AppendUint16(out, ns)
	out = binary.BigEndian.AppendUint16(out, ar)
	out = append(out, req[headerLen:q.qend]...)
	if answer != nil {
		w := answer.wire
		if answer.recLen > 0 && rot != 0 {
			k := int(rot%uint32(len(answer.rrs))) * answer.recLen
			out = append(out, w[k:]...)
			out = append(out, w[:k]...)
		} else {
			out = append(out, w...)
		}
	}
	out = append(out, dyn...)
	out = append(out, authority...)
	if answer != nil && withExtra {
		out = append(out, answer.extraWire...)
	}
	if q.edns {
		var ednsFlags byte
		if q.do {
			ednsFlags = 0x80
		}
		out = append(out, 0, 0, typeOPT)
		out = binary.BigEndian.AppendUint16(out, ourUDPSize)
		out = append(out, 0, 0, ednsFlags, 0, 0, 0)
	}
	return out
}

// appendAddrRecord writes an A or AAAA record owned by the question name.
func appendAddrRecord(out []byte, r result, ttl uint32) []byte {
	out = append(out, 0xc0, 0x0c)
	if r.addr.Is4() {
		b := r.addr.As4()
		out = append(out, 0, byte(dns.TypeA), 0, 1)
		out = binary.BigEndian.AppendUint32(out, ttl)
		out = append(out, 0, 4)
		return append(out, b[:]...)
	}
	b := r.addr.As16()
	out = append(out, 0, byte(dns.TypeAAAA), 0, 1)
	out = binary.BigEndian.AppendUint32(out, ttl)
	out = append(out, 0, 16)
	return append(out, b[:]...)
}
