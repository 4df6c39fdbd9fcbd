package dns

import (
	"net"
	"net/netip"
)

// udpConn reads queries and writes answers on a PacketConn. On a *net.UDPConn it avoids the
// per-packet address allocations of ReadFrom/WriteTo, and when the socket is bound to a wildcard
// address it answers from the address the query was sent to (IP_PKTINFO / IPV6_PKTINFO), so a
// multi-homed host never answers from an address the client did not ask.
type udpConn struct {
	pc      net.PacketConn
	uc      *net.UDPConn
	pktinfo bool
}

// dstInfo is where a datagram was sent: the local address and interface (with PKTINFO only).
type dstInfo struct {
	addr    netip.Addr
	ifindex int
}

func newUDPConn(pc net.PacketConn) *udpConn {
	c := &udpConn{pc: pc}
	if uc, ok := pc.(*net.UDPConn); ok {
		c.uc = uc
		if la, ok := uc.LocalAddr().(*net.UDPAddr); ok && (la.IP == nil || la.IP.IsUnspecified()) {
			c.pktinfo = enablePktinfo(uc)
		}
	}
	return c
}

func (c *udpConn) read(buf, oob []byte) (int, netip.AddrPort, dstInfo, error) {
	if c.uc == nil {
		n, addr, err := c.pc.ReadFrom(buf)
		var src netip.AddrPort
		if ua, ok := addr.(*net.UDPAddr); ok {
			src = ua.AddrPort()
		}
		return n, src, dstInfo{}, err
	}
	if !c.pktinfo {
		n, src, err := c.uc.ReadFromUDPAddrPort(buf)
		return n, src, dstInfo{}, err
	}
	n, oobn, _, src, err := c.uc.ReadMsgUDPAddrPort(buf, oob)
	if err != nil {
		return n, src, dstInfo{}, err
	}
	return n, src, parsePktinfo(oob[:oobn]), nil
}

// write sends b to to; oob is scratch space for the source-address control message.
func (c *udpConn) write(b []byte, to netip.AddrPort, dst dstInfo, oob []byte) error {
	if c.uc == nil {
		_, err := c.pc.WriteTo(b, net.UDPAddrFromAddrPort(to))
		return err
	}
	if c.pktinfo && dst.addr.IsValid() {
		_, _, err := c.uc.WriteMsgUDPAddrPort(b, appendPktinfo(oob[:0], dst), to)
		return err
	}
	_, err := c.uc.WriteToUDPAddrPort(b, to)
	return err
}
