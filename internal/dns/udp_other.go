//go:build !linux

package dns

import "net"

func enablePktinfo(*net.UDPConn) bool { return false }

func parsePktinfo([]byte) dstInfo { return dstInfo{} }

func appendPktinfo(b []byte, _ dstInfo) []byte { return b }
