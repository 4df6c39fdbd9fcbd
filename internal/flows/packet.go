// Package flows receives the packets the kernel logs for NetworkPolicy verdicts and keeps them as
// flow records for `podnet flows`.
//
// The policy table (nftables table "ip podnet-policy") logs a denied connection's packet to an NFLOG
// group just before dropping it (`log group G prefix "P"`, rate limited). A Listener, bound to that
// group in the node's network namespace, turns each logged packet into a Packet (addresses,
// protocol, ports, the rule's prefix, a timestamp); the agent resolves pods and policies and adds a
// Record to a Log, a bounded in-memory ring that the CLI lists and follows.
package flows

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"time"
)

// IP protocol numbers ParsePacket and ProtocolName know.
const (
	ProtoICMP uint8 = 1
	ProtoTCP  uint8 = 6
	ProtoUDP  uint8 = 17
	ProtoSCTP uint8 = 132
)

// Packet is what one logged IPv4 packet tells: its addresses, protocol and (for TCP, UDP and
// SCTP) ports, plus the prefix of the log rule that logged it and when.
type Packet struct {
	// Time is the kernel's timestamp of the packet when the kernel gives one, else the time the
	// listener received it. ParsePacket leaves it zero.
	Time time.Time
	// Prefix is the log rule's prefix (`log prefix "…"`). ParsePacket leaves it empty.
	Prefix string
	// Src and Dst are the IPv4 source and destination addresses.
	Src, Dst netip.Addr
	// Protocol is the IP protocol number (ProtoTCP, ProtoUDP, …).
	Protocol uint8
	// SrcPort and DstPort are the transport ports for TCP, UDP and SCTP; zero for other
	// protocols and for non-first fragments, which carry no transport header.
	SrcPort, DstPort uint16
}

// ErrNotIPv4 is returned by ParsePacket for a payload that is not an IPv4 packet.
var ErrNotIPv4 = errors.New("not an IPv4 packet")

// ParsePacket parses an IPv4 header, and the ports of a TCP, UDP or SCTP header after it, from the
// start of payload (a packet as NFLOG copies it: network header first, possibly cut short by the
// copy range). It handles header options (IHL > 5) and fragments: a non-first fragment yields
// addresses and protocol without ports. A payload too short for the IPv4 header, or for the ports
// of a first fragment, is an error, as is a payload that is not IPv4 (ErrNotIPv4) or whose header
// lengths are inconsistent.
func ParsePacket(payload []byte) (Packet, error) {
	const minHeader = 20
	if len(payload) == 0 {
		return Packet{}, errors.New("empty packet")
	}
	if v := payload[0] >> 4; v != 4 {
		return Packet{}, fmt.Errorf("%w (IP version %d)", ErrNotIPv4, v)
	}
	if len(payload) < minHeader {
		return Packet{}, fmt.Errorf("truncated IPv4 header: %d bytes", len(payload))
	}
	ihl := int(payload[0]&0x0f) * 4
	if ihl < minHeader {
		return Packet{}, fmt.Errorf("bad IPv4 header length %d", ihl)
	}
	if len(payload) < ihl {
		return Packet{}, fmt.Errorf("truncated IPv4 header: %d of %d bytes", len(payload), ihl)
	}
	total := int(binary.BigEndian.Uint16(payload[2:4]))
	if total < ihl {
		return Packet{}, fmt.Errorf("bad IPv4 total length %d (header %d)", total, ihl)
	}
	p := Packet{
		Protocol: payload[9],
		Src:      netip.AddrFrom4([4]byte(payload[12:16])),
		Dst:      netip.AddrFrom4([4]byte(payload[16:20])),
	}
	if fragOffset := binary.BigEndian.Uint16(payload[6:8]) & 0x1fff; fragOffset != 0 {
		return p, nil // a later fragment: no transport header
	}
	switch p.Protocol {
	case ProtoTCP, ProtoUDP, ProtoSCTP:
		// All three start with source port, destination port. Bytes past the IP total length
		// (link-layer padding) are not the transport header.
		l4 := payload[ihl:min(len(payload), total)]
		if len(l4) < 4 {
			return Packet{}, fmt.Errorf("truncated %s header: %d bytes", ProtocolName(p.Protocol), len(l4))
		}
		p.SrcPort = binary.BigEndian.Uint16(l4[0:2])
		p.DstPort = binary.BigEndian.Uint16(l4[2:4])
	}
	return p, nil
}

// ProtocolName names an IP protocol number the way NetworkPolicy does ("TCP", "UDP", "SCTP"), plus
// "ICMP"; any other protocol is its decimal number.
func ProtocolName(p uint8) string {
	switch p {
	case ProtoICMP:
		return "ICMP"
	case ProtoTCP:
		return "TCP"
	case ProtoUDP:
		return "UDP"
	case ProtoSCTP:
		return "SCTP"
	}
	return strconv.Itoa(int(p))
}
