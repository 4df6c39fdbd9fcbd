package flows

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"
)

// ipv4 builds an IPv4 header with the given protocol, options (a multiple of 4 bytes) and fragment
// offset (in 8-byte units), followed by l4. The total length covers header and l4 plus extra
// bytes the caller may cut off (as a short copy range would).
func ipv4(proto uint8, options []byte, fragOffset uint16, l4 []byte, extra int) []byte {
	ihl := 20 + len(options)
	b := make([]byte, ihl, ihl+len(l4))
	b[0] = 0x40 | byte(ihl/4)
	binary.BigEndian.PutUint16(b[2:4], uint16(ihl+len(l4)+extra))
	binary.BigEndian.PutUint16(b[6:8], fragOffset&0x1fff)
	b[8] = 64
	b[9] = proto
	copy(b[12:16], []byte{10, 244, 1, 5})
	copy(b[16:20], []byte{10, 244, 2, 7})
	copy(b[20:], options)
	return append(b, l4...)
}

func ports(src, dst uint16, rest int) []byte {
	b := make([]byte, 4+rest)
	binary.BigEndian.PutUint16(b[0:2], src)
	binary.BigEndian.PutUint16(b[2:4], dst)
	return b
}

func TestParsePacket(t *testing.T) {
	src, dst := netip.MustParseAddr("10.244.1.5"), netip.MustParseAddr("10.244.2.7")
	withPorts := func(proto uint8, sp, dp uint16) Packet {
		return Packet{Src: src, Dst: dst, Protocol: proto, SrcPort: sp, DstPort: dp}
	}
	tcp := ipv4(ProtoTCP, nil, 0, ports(40000, 80, 16), 0)
	tests := []struct {
		name    string
		in      []byte
		want    Packet
		wantErr bool
		notIPv4 bool
	}{
		{name: "tcp", in: tcp, want: withPorts(ProtoTCP, 40000, 80)},
		{name: "udp", in: ipv4(ProtoUDP, nil, 0, ports(5353, 53, 4), 0), want: withPorts(ProtoUDP, 5353, 53)},
		{name: "sctp", in: ipv4(ProtoSCTP, nil, 0, ports(1234, 9999, 8), 0), want: withPorts(ProtoSCTP, 1234, 9999)},
		{name: "icmp has no ports", in: ipv4(ProtoICMP, nil, 0, []byte{8, 0, 0, 0, 0, 1, 0, 1}, 0), want: withPorts(ProtoICMP, 0, 0)},
		{name: "other protocol", in: ipv4(47, nil, 0, []byte{0, 0, 8, 0}, 0), want: withPorts(47, 0, 0)},
		{name: "ip options", in: ipv4(ProtoTCP, []byte{1, 1, 1, 0, 7, 7, 4, 0}, 0, ports(1, 2, 16), 0), want: withPorts(ProtoTCP, 1, 2)},
		{name: "max ihl", in: ipv4(ProtoUDP, make([]byte, 40), 0, ports(3, 4, 4), 0), want: withPorts(ProtoUDP, 3, 4)},
		{name: "cut by copy range after ports", in: ipv4(ProtoTCP, nil, 0, ports(5, 6, 0), 1400), want: withPorts(ProtoTCP, 5, 6)},
		{name: "first fragment", in: func() []byte { b := ipv4(ProtoUDP, nil, 0, ports(7, 8, 4), 0); b[6] |= 0x20; return b }(), want: withPorts(ProtoUDP, 7, 8)},
		{name: "later fragment has no ports", in: ipv4(ProtoUDP, nil, 185, []byte{0xde, 0xad}, 0), want: withPorts(ProtoUDP, 0, 0)},
		{name: "later fragment, empty", in: ipv4(ProtoTCP, nil, 1, nil, 0), want: withPorts(ProtoTCP, 0, 0)},
		{name: "ethernet padding is not ports", in: func() []byte {
			b := ipv4(ProtoUDP, nil, 0, []byte{0, 1}, 0)
			return append(b, 0, 0, 0, 0) // total length says 22: the UDP header is cut
		}(), wantErr: true},

		{name: "empty", in: nil, wantErr: true},
		{name: "ipv6", in: append([]byte{0x60}, make([]byte, 39)...), wantErr: true, notIPv4: true},
		{name: "truncated header", in: tcp[:19], wantErr: true},
		{name: "ihl below 5", in: func() []byte { b := append([]byte(nil), tcp...); b[0] = 0x44; return b }(), wantErr: true},
		{name: "truncated options", in: ipv4(ProtoTCP, make([]byte, 8), 0, nil, 20)[:24], wantErr: true},
		{name: "total length below header", in: func() []byte {
			b := append([]byte(nil), tcp...)
			binary.BigEndian.PutUint16(b[2:4], 12)
			return b
		}(), wantErr: true},
		{name: "truncated tcp ports", in: tcp[:23], wantErr: true},
		{name: "no transport header", in: tcp[:20], wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParsePacket(tt.in)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("ParsePacket = %+v, want an error", got)
				}
				if errors.Is(err, ErrNotIPv4) != tt.notIPv4 {
					t.Errorf("errors.Is(%v, ErrNotIPv4) = %v, want %v", err, !tt.notIPv4, tt.notIPv4)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParsePacket: %v", err)
			}
			if got != tt.want {
				t.Errorf("ParsePacket = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestProtocolName(t *testing.T) {
	for p, want := range map[uint8]string{1: "ICMP", 6: "TCP", 17: "UDP", 132: "SCTP", 0: "0", 47: "47", 255: "255"} {
		if got := ProtocolName(p); got != want {
			t.Errorf("ProtocolName(%d) = %q, want %q", p, got, want)
		}
	}
}
