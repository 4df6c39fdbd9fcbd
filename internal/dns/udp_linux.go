//go:build linux

package dns

import (
	"encoding/binary"
	"net"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// enablePktinfo asks the kernel for each datagram's destination address (IPv4 and IPv6; a
// dual-stack socket takes both).
func enablePktinfo(uc *net.UDPConn) bool {
	rc, err := uc.SyscallConn()
	if err != nil {
		return false
	}
	ok := false
	_ = rc.Control(func(fd uintptr) {
		if unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_PKTINFO, 1) == nil {
			ok = true
		}
		if unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1) == nil {
			ok = true
		}
	})
	return ok
}

func parsePktinfo(oob []byte) dstInfo {
	for len(oob) >= unix.SizeofCmsghdr {
		h, data, rest, err := unix.ParseOneSocketControlMessage(oob)
		if err != nil {
			break
		}
		switch {
		case h.Level == unix.IPPROTO_IP && h.Type == unix.IP_PKTINFO && len(data) >= unix.SizeofInet4Pktinfo:
			return dstInfo{addr: netip.AddrFrom4([4]byte(data[8:12])), ifindex: int(binary.NativeEndian.Uint32(data[0:4]))}
		case h.Level == unix.IPPROTO_IPV6 && h.Type == unix.IPV6_PKTINFO && len(data) >= unix.SizeofInet6Pktinfo:
			return dstInfo{addr: netip.AddrFrom16([16]byte(data[0:16])), ifindex: int(binary.NativeEndian.Uint32(data[16:20]))}
		}
		oob = rest
	}
	return dstInfo{}
}

// appendPktinfo writes the control message that sets a reply's source address. b must be
// 8-byte aligned with room for one message (the worker's oob buffer).
func appendPktinfo(b []byte, dst dstInfo) []byte {
	if a := dst.addr.Unmap(); a.Is4() {
		b = b[:unix.CmsgSpace(unix.SizeofInet4Pktinfo)]
		clear(b)
		h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
		h.Level = unix.IPPROTO_IP
		h.Type = unix.IP_PKTINFO
		h.SetLen(unix.CmsgLen(unix.SizeofInet4Pktinfo))
		pi := (*unix.Inet4Pktinfo)(unsafe.Pointer(&b[unix.CmsgLen(0)]))
		pi.Spec_dst = a.As4()
		return b
	}
	b = b[:unix.CmsgSpace(unix.SizeofInet6Pktinfo)]
	clear(b)
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level = unix.IPPROTO_IPV6
	h.Type = unix.IPV6_PKTINFO
	h.SetLen(unix.CmsgLen(unix.SizeofInet6Pktinfo))
	pi := (*unix.Inet6Pktinfo)(unsafe.Pointer(&b[unix.CmsgLen(0)]))
	pi.Addr = dst.addr.As16()
	pi.Ifindex = uint32(dst.ifindex)
	return b
}
