package dns

import (
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// tolerateUnreadyAnnotation is the legacy form of spec.publishNotReadyAddresses, still named by
// the specification's definition of "ready".
const tolerateUnreadyAnnotation = "service.alpha.kubernetes.io/tolerate-unready-endpoints"

// staticRecords are the zone's own names: dns-version, the nameserver, and the svc and pod
// subtrees, which exist even while empty.
func (ix *Index) staticRecords() recordSet {
	z := ix.zone
	r := recordSet{}
	r.add("dns-version."+z, &dns.TXT{
		Hdr: dns.RR_Header{Name: "dns-version." + z, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: versionTTL},
		Txt: []string{SchemaVersion},
	})
	r.touch("ns.dns." + z)
	for _, a := range ix.nsAddrs {
		r.add("ns.dns."+z, addrRR("ns.dns."+z, ix.ttl, a))
	}
	r.touch("svc." + z)
	if ix.podMode != PodModeDisabled {
		r.touch("pod." + z)
	}
	return r
}

// namespaceRecords make <ns>.svc.<zone> (and <ns>.pod.<zone>) exist.
func (ix *Index) namespaceRecords(ns string) recordSet {
	r := recordSet{}
	ix.touchNamespace(r, ns)
	return r
}

func (ix *Index) touchNamespace(r recordSet, ns string) {
	ns = strings.ToLower(ns)
	r.touch(ns + ".svc." + ix.zone)
	if ix.podMode != PodModeDisabled {
		r.touch(ns + ".pod." + ix.zone)
	}
}

// serviceRecords derives every record of one Service (section 2.3, 2.4 and 2.5 of the spec).
func (ix *Index) serviceRecords(svc *corev1.Service, endpointSlices []*discoveryv1.EndpointSlice) recordSet {
	r := recordSet{}
	ix.touchNamespace(r, svc.Namespace)
	base := strings.ToLower(svc.Name+"."+svc.Namespace) + ".svc." + ix.zone
	ttl := ix.ttl
	switch {
	case svc.Spec.Type == corev1.ServiceTypeExternalName:
		target := dns.Fqdn(svc.Spec.ExternalName)
		if _, ok := dns.IsDomainName(target); !ok || svc.Spec.ExternalName == "" {
			return r
		}
		r.add(base, &dns.CNAME{
			Hdr:    dns.RR_Header{Name: base, Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: ttl},
			Target: target,
		})
	case svc.Spec.ClusterIP == corev1.ClusterIPNone:
		ix.headlessRecords(r, svc, base, endpointSlices)
	default:
		ips := svc.Spec.ClusterIPs
		if len(ips) == 0 && svc.Spec.ClusterIP != "" {
			ips = []string{svc.Spec.ClusterIP}
		}
		var addrs []dns.RR
		for _, s := range ips {
			a, err := netip.ParseAddr(s)
			if err != nil {
				continue
			}
			a = a.Unmap()
			rr := addrRR(base, ttl, a)
			addrs = append(addrs, rr)
			r.add(base, rr)
			r.add(reverseName(a), ptrRR(reverseName(a), ttl, base))
		}
		if len(addrs) == 0 {
			return r
		}
		for _, p := range svc.Spec.Ports {
			if p.Name == "" {
				continue
			}
			name := srvName(p.Name, p.Protocol, base)
			r.add(name, srvRR(name, ttl, uint16(p.Port), base))
			r.addExtra(name, addrs...)
		}
	}
	return r
}

// headlessRecords: one address record per ready endpoint at the Service name and at the
// endpoint's hostname, a PTR per endpoint address, and SRV per (named port, endpoint).
func (ix *Index) headlessRecords(r recordSet, svc *corev1.Service, base string, endpointSlices []*discoveryv1.EndpointSlice) {
	ttl := ix.ttl
	all := svc.Spec.PublishNotReadyAddresses || svc.Annotations[tolerateUnreadyAnnotation] == "true"
	hostAddrs := map[string][]dns.RR{}  // hostname FQDN -> its address records (owner = that name)
	srvTargets := map[string][]string{} // SRV name -> target FQDNs
	for _, sl := range endpointSlices {
		if sl.AddressType != discoveryv1.AddressTypeIPv4 && sl.AddressType != discoveryv1.AddressTypeIPv6 {
			continue
		}
		for _, ep := range sl.Endpoints {
			if len(ep.Addresses) == 0 || (!all && ep.Conditions.Ready != nil && !*ep.Conditions.Ready) {
				continue
			}
			// Consumers use the first address (https://issue.k8s.io/106267).
			a, err := netip.ParseAddr(ep.Addresses[0])
			if err != nil {
				continue
			}
			a = a.Unmap()
			host := dashed(a)
			if ep.Hostname != nil && *ep.Hostname != "" {
				host = strings.ToLower(*ep.Hostname)
			}
			target := host + "." + base
			r.add(base, addrRR(base, ttl, a))
			rr := addrRR(target, ttl, a)
			r.add(target, rr)
			hostAddrs[target] = append(hostAddrs[target], rr)
			r.add(reverseName(a), ptrRR(reverseName(a), ttl, target))
			for _, p := range sl.Ports {
				if p.Name == nil || *p.Name == "" || p.Port == nil {
					continue
				}
				proto := corev1.ProtocolTCP
				if p.Protocol != nil {
					proto = *p.Protocol
				}
				name := srvName(*p.Name, proto, base)
				r.add(name, srvRR(name, ttl, uint16(*p.Port), target))
				srvTargets[name] = append(srvTargets[name], target)
			}
		}
	}
	for name, targets := range srvTargets {
		for _, t := range targets {
			r.addExtra(name, hostAddrs[t]...)
		}
	}
}

// podRecords: <ip-dashed>.<ns>.pod.<zone> for each of the pod's addresses (PodModeVerified).
func (ix *Index) podRecords(p *corev1.Pod) recordSet {
	r := recordSet{}
	if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		return r
	}
	ips := p.Status.PodIPs
	if len(ips) == 0 && p.Status.PodIP != "" {
		ips = []corev1.PodIP{{IP: p.Status.PodIP}}
	}
	for _, ip := range ips {
		a, err := netip.ParseAddr(ip.IP)
		if err != nil {
			continue
		}
		a = a.Unmap()
		name := dashed(a) + "." + strings.ToLower(p.Namespace) + ".pod." + ix.zone
		r.add(name, addrRR(name, ix.ttl, a))
	}
	return r
}

func srvName(port string, proto corev1.Protocol, base string) string {
	if proto == "" {
		proto = corev1.ProtocolTCP
	}
	return "_" + strings.ToLower(port) + "._" + strings.ToLower(string(proto)) + "." + base
}

// dashed is the label form of an address: 10-244-1-5, fd00--5.
func dashed(a netip.Addr) string {
	s := a.String()
	if a.Is4() {
		return strings.ReplaceAll(s, ".", "-")
	}
	return strings.ReplaceAll(s, ":", "-")
}

// undash parses a label made by dashed (or any other spelling of an address with '-' for '.' or
// ':'): four dash-separated decimal parts are IPv4, anything else is tried as IPv6.
func undash(label string) (netip.Addr, bool) {
	if label == "" || len(label) > 45 {
		return netip.Addr{}, false
	}
	if a, ok := undash4(label); ok {
		return a, true
	}
	if strings.Count(label, "-") == 3 && !strings.Contains(label, "--") {
		return netip.Addr{}, false // four parts, but not an IPv4 address
	}
	a, err := netip.ParseAddr(strings.ReplaceAll(label, "-", ":"))
	if err != nil || a.Zone() != "" || !a.Is6() || a.Is4In6() {
		return netip.Addr{}, false
	}
	return a, true
}

// undash4 parses a-b-c-d without allocating: decimal octets without leading zeros.
func undash4(label string) (netip.Addr, bool) {
	var b [4]byte
	part, digits, v := 0, 0, 0
	for i := 0; i <= len(label); i++ {
		if i == len(label) || label[i] == '-' {
			if digits == 0 || part > 3 {
				return netip.Addr{}, false
			}
			b[part] = byte(v)
			part++
			digits, v = 0, 0
			continue
		}
		c := label[i]
		if c < '0' || c > '9' || (digits == 1 && v == 0) {
			return netip.Addr{}, false
		}
		v = v*10 + int(c-'0')
		digits++
		if v > 255 {
			return netip.Addr{}, false
		}
	}
	if part != 4 {
		return netip.Addr{}, false
	}
	return netip.AddrFrom4(b), true
}

// reverseName is the in-addr.arpa or ip6.arpa name of an address.
func reverseName(a netip.Addr) string {
	if a.Is4() {
		b := a.As4()
		var sb strings.Builder
		for i := 3; i >= 0; i-- {
			sb.WriteString(strconv.Itoa(int(b[i])))
			sb.WriteByte('.')
		}
		sb.WriteString("in-addr.arpa.")
		return sb.String()
	}
	const hex = "0123456789abcdef"
	b := a.As16()
	out := make([]byte, 0, 64+9)
	for i := 15; i >= 0; i-- {
		out = append(out, hex[b[i]&0xf], '.', hex[b[i]>>4], '.')
	}
	return string(append(out, "ip6.arpa."...))
}

func addrRR(name string, ttl uint32, a netip.Addr) dns.RR {
	if a.Is4() {
		b := a.As4()
		return &dns.A{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: ttl}, A: net.IP(b[:])}
	}
	b := a.As16()
	return &dns.AAAA{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeAAAA, Class: dns.ClassINET, Ttl: ttl}, AAAA: net.IP(b[:])}
}

func ptrRR(name string, ttl uint32, target string) dns.RR {
	return &dns.PTR{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypePTR, Class: dns.ClassINET, Ttl: ttl}, Ptr: target}
}

func srvRR(name string, ttl uint32, port uint16, target string) dns.RR {
	return &dns.SRV{
		Hdr:      dns.RR_Header{Name: name, Rrtype: dns.TypeSRV, Class: dns.ClassINET, Ttl: ttl},
		Priority: 0, Weight: 100, Port: port, Target: target,
	}
}
