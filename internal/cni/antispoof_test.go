package cni

import (
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/vishvananda/netlink"
)

// TestAntiSpoof: a pod that adds a second address cannot use it as a source
// towards another pod on the bridge, neither in IPv4 nor as an ARP sender;
// with its own address both work.
func TestAntiSpoof(t *testing.T) {
	n := newNode(t)
	l := n.list("10.250.14.0/24", nil)
	podA, _, resA := n.add(l)
	podB, _, resB := n.add(l)
	ipA, ipB := podIP(t, resA), podIP(t, resB)
	macA, _ := net.ParseMAC(resA.Interfaces[2].Mac)
	macB, _ := net.ParseMAC(resB.Interfaces[2].Mac)
	spoof := net.ParseIP("10.250.14.200").To4()

	anl, bnl := nlAt(t, podA), nlAt(t, podB)
	aEth, err := anl.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	bEth, err := bnl.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if err := anl.AddrAdd(aEth, &netlink.Addr{IPNet: &net.IPNet{IP: spoof, Mask: net.CIDRMask(32, 32)}}); err != nil {
		t.Fatal(err)
	}

	// ARP first, while B has learnt no neighbour yet. B creates a neighbour
	// entry for the sender of every ARP request for its address that
	// reaches it.
	fd := arpSocket(t, podA)
	sendARPRequest(t, fd, aEth.Attrs().Index, macA, spoof, ipB)
	time.Sleep(300 * time.Millisecond)
	if hasNeigh(t, bnl, bEth, spoof) {
		t.Fatalf("pod B learnt %s from an ARP request pod A sent with a spoofed sender IP", spoof)
	}
	sendARPRequest(t, fd, aEth.Attrs().Index, macA, ipA, ipB)
	if !waitFor(2*time.Second, func() bool { return hasNeigh(t, bnl, bEth, ipA) }) {
		t.Fatalf("pod B did not learn %s from pod A's genuine ARP request", ipA)
	}

	// IPv4: a static neighbour in A so that the spoofed datagram needs no
	// ARP and only the IPv4 rule can stop it.
	if err := anl.NeighAdd(&netlink.Neigh{LinkIndex: aEth.Attrs().Index, Family: netlink.FAMILY_V4, State: netlink.NUD_PERMANENT, IP: ipB, HardwareAddr: macB}); err != nil {
		t.Fatal(err)
	}
	recv := udpSocket(t, podB, net.JoinHostPort(ipB.String(), "9999"))
	spoofed := udpSocket(t, podA, net.JoinHostPort(spoof.String(), "0"))
	genuine := udpSocket(t, podA, net.JoinHostPort(ipA.String(), "0"))
	dst := &net.UDPAddr{IP: ipB, Port: 9999}
	if _, err := spoofed.WriteToUDP([]byte("spoofed"), dst); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if _, err := genuine.WriteToUDP([]byte("genuine"), dst); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 100)
	recv.SetReadDeadline(time.Now().Add(3 * time.Second))
	m, from, err := recv.ReadFromUDP(buf)
	if err != nil {
		t.Fatalf("pod B received nothing from pod A's own address: %v", err)
	}
	if string(buf[:m]) != "genuine" || !from.IP.Equal(ipA) {
		t.Fatalf("pod B received %q from %s; the spoofed datagram got through", buf[:m], from)
	}
	recv.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if m, from, err := recv.ReadFromUDP(buf); err == nil {
		t.Fatalf("pod B received another datagram %q from %s", buf[:m], from)
	}

	// Both drops happened in podnet's rules.
	drops := ruleCounters(t, n)
	if drops[ruleCommentIP] < 1 || drops[ruleCommentARP] < 1 {
		t.Fatalf("drop counters %v, want ≥1 for both rules", drops)
	}
}

func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return cond()
}

func hasNeigh(t *testing.T, h *netlink.Handle, link netlink.Link, ip net.IP) bool {
	t.Helper()
	ns, err := h.NeighList(link.Attrs().Index, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range ns {
		if n.IP.Equal(ip) {
			return true
		}
	}
	return false
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// arpSocket opens an AF_PACKET socket in the pod's namespace.
func arpSocket(t *testing.T, pod string) int {
	t.Helper()
	fd := -1
	inNetns(t, pod, func() (err error) {
		fd, err = syscall.Socket(syscall.AF_PACKET, syscall.SOCK_RAW, int(htons(syscall.ETH_P_ARP)))
		return err
	})
	t.Cleanup(func() { syscall.Close(fd) })
	return fd
}

// sendARPRequest broadcasts "who has target? tell sender" from mac.
func sendARPRequest(t *testing.T, fd, ifindex int, mac net.HardwareAddr, sender, target net.IP) {
	t.Helper()
	bcast := net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	f := make([]byte, 0, 42)
	f = append(f, bcast...)
	f = append(f, mac...)
	f = append(f, 0x08, 0x06)             // ethertype ARP
	f = append(f, 0, 1, 0x08, 0x00, 6, 4) // Ethernet, IPv4, hlen, plen
	f = append(f, 0, 1)                   // request
	f = append(f, mac...)
	f = append(f, sender.To4()...)
	f = append(f, 0, 0, 0, 0, 0, 0)
	f = append(f, target.To4()...)
	sa := &syscall.SockaddrLinklayer{Ifindex: ifindex, Protocol: htons(syscall.ETH_P_ARP), Halen: 6}
	copy(sa.Addr[:], bcast)
	if err := syscall.Sendto(fd, f, 0, sa); err != nil {
		t.Fatalf("send ARP: %v", err)
	}
}

// ruleCounters returns the packet counter of each anti-spoof rule by comment.
func ruleCounters(t *testing.T, n *testNode) map[string]uint64 {
	t.Helper()
	c := nftAt(t, n.name)
	table := &nftables.Table{Name: AntiSpoofTable, Family: nftables.TableFamilyBridge}
	rules, err := c.GetRules(table, &nftables.Chain{Name: AntiSpoofChain, Table: table})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]uint64{}
	for _, r := range rules {
		name, _ := userdata.GetString(r.UserData, userdata.TypeComment)
		for _, e := range r.Exprs {
			if ctr, ok := e.(*expr.Counter); ok {
				out[name] = ctr.Packets
			}
		}
	}
	return out
}
