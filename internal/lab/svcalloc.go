package lab

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/podnet/podnet/internal/manifest"
)

// serviceAllocator does at admission what kube-apiserver's Service storage does with its ClusterIP
// and NodePort allocators: it gives each Service its ClusterIP, NodePorts and health-check
// NodePort, honours requested values, refuses taken or out-of-range ones and keeps what a Service
// has on update. It is built from the Services in the store and updated as one request's Services
// are admitted in turn, so a whole request is checked before anything is written.
//
// Dynamic allocation is deterministic: the lowest free value of the range's upper band first, then
// of its lower band, kube-apiserver's split that keeps low values for Services that ask for them.
type serviceAllocator struct {
	cidr     *net.IPNet
	base     uint32          // the CIDR's network address
	size     uint32          // usable addresses: base+1 … base+size
	reserved map[uint32]bool // .1 (the kubernetes Service) and the cluster DNS address
	ips      map[uint32]Key  // allocated ClusterIP → owner
	// nodePorts holds every allocated NodePort by number and protocol; a health-check NodePort
	// counts as TCP.
	nodePorts map[int32]map[corev1.Protocol]Key
}

// newServiceAllocator starts from the allocations of the Services that exist.
func newServiceAllocator(cidr *net.IPNet, dnsIP net.IP, existing []corev1.Service) *serviceAllocator {
	ones, bits := cidr.Mask.Size()
	a := &serviceAllocator{
		cidr:      cidr,
		base:      ip4ToUint(cidr.IP),
		size:      uint32(1)<<(bits-ones) - 2, // without the network and broadcast addresses
		reserved:  map[uint32]bool{},
		ips:       map[uint32]Key{},
		nodePorts: map[int32]map[corev1.Protocol]Key{},
	}
	a.reserved[a.base+1] = true
	if dnsIP != nil {
		a.reserved[ip4ToUint(dnsIP)] = true
	}
	for i := range existing {
		a.claim(&existing[i])
	}
	return a
}

func ip4ToUint(ip net.IP) uint32 { return binary.BigEndian.Uint32(ip.To4()) }

func uintToIP4(n uint32) net.IP {
	ip := make(net.IP, 4)
	binary.BigEndian.PutUint32(ip, n)
	return ip
}

func keyOfService(s *corev1.Service) Key { return Key{Namespace: s.Namespace, Name: s.Name} }

// hasNodePorts: the Service type has NodePorts (a LoadBalancer may have them without allocation).
func hasNodePorts(s *corev1.Service) bool {
	return s.Spec.Type == corev1.ServiceTypeNodePort || s.Spec.Type == corev1.ServiceTypeLoadBalancer
}

// allocatesNodePorts: NodePorts the user left out are allocated.
func allocatesNodePorts(s *corev1.Service) bool {
	if s.Spec.Type == corev1.ServiceTypeLoadBalancer {
		return s.Spec.AllocateLoadBalancerNodePorts == nil || *s.Spec.AllocateLoadBalancerNodePorts
	}
	return s.Spec.Type == corev1.ServiceTypeNodePort
}

// NeedsHealthCheckNodePort is true for a LoadBalancer Service with externalTrafficPolicy Local,
// whose nodes answer a load balancer's health checks on spec.healthCheckNodePort.
func NeedsHealthCheckNodePort(s *corev1.Service) bool {
	return s.Spec.Type == corev1.ServiceTypeLoadBalancer && s.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal
}

// claim records a Service's allocations.
func (a *serviceAllocator) claim(s *corev1.Service) {
	k := keyOfService(s)
	if ip := net.ParseIP(s.Spec.ClusterIP).To4(); ip != nil && a.cidr.Contains(ip) {
		a.ips[ip4ToUint(ip)] = k
	}
	for _, p := range s.Spec.Ports {
		if p.NodePort != 0 {
			a.setPort(p.NodePort, p.Protocol, k)
		}
	}
	if s.Spec.HealthCheckNodePort != 0 {
		a.setPort(s.Spec.HealthCheckNodePort, corev1.ProtocolTCP, k)
	}
}

// release forgets a Service's allocations.
func (a *serviceAllocator) release(s *corev1.Service) {
	k := keyOfService(s)
	if ip := net.ParseIP(s.Spec.ClusterIP).To4(); ip != nil && a.ips[ip4ToUint(ip)] == k {
		delete(a.ips, ip4ToUint(ip))
	}
	drop := func(port int32, proto corev1.Protocol) {
		if a.nodePorts[port][proto] == k {
			delete(a.nodePorts[port], proto)
			if len(a.nodePorts[port]) == 0 {
				delete(a.nodePorts, port)
			}
		}
	}
	for _, p := range s.Spec.Ports {
		drop(p.NodePort, p.Protocol)
	}
	drop(s.Spec.HealthCheckNodePort, corev1.ProtocolTCP)
}

func (a *serviceAllocator) setPort(port int32, proto corev1.Protocol, k Key) {
	if a.nodePorts[port] == nil {
		a.nodePorts[port] = map[corev1.Protocol]Key{}
	}
	a.nodePorts[port][proto] = k
}

// rangeOffset is where the upper band of a range of size values starts, as kube-apiserver
// computes it: ClusterIPs min(max(16, size/16), 256), NodePorts min(max(16, size/32), 128).
func rangeOffset(size, step, maxOffset uint32) uint32 {
	if size < 16 {
		return 0
	}
	return min(max(16, size/step), maxOffset)
}

// nextFree returns the lowest index in [0, size) that free accepts, upper band first.
func nextFree(size, offset uint32, free func(uint32) bool) (uint32, bool) {
	for _, band := range [][2]uint32{{offset, size}, {0, offset}} {
		for i := band[0]; i < band[1]; i++ {
			if free(i) {
				return i, true
			}
		}
	}
	return 0, false
}

// Admit allocates for svc (cur is the stored Service it replaces, nil for a new one), mutating
// svc's spec, and records the result. On error nothing changes.
func (a *serviceAllocator) Admit(svc, cur *corev1.Service) error {
	if cur != nil {
		a.release(cur)
	}
	errs := a.admit(svc, cur)
	if len(errs) > 0 {
		if cur != nil {
			a.claim(cur)
		}
		return errs.ToAggregate()
	}
	a.claim(svc)
	return nil
}

func (a *serviceAllocator) admit(svc, cur *corev1.Service) field.ErrorList {
	spec := field.NewPath("spec")
	errs := a.admitClusterIP(svc, cur, spec.Child("clusterIP"))
	if len(errs) > 0 {
		return errs
	}
	if errs = a.admitNodePorts(svc, cur, spec.Child("ports")); len(errs) > 0 {
		return errs
	}
	return a.admitHealthCheckNodePort(svc, cur, spec.Child("healthCheckNodePort"))
}

func (a *serviceAllocator) admitClusterIP(svc, cur *corev1.Service, p *field.Path) field.ErrorList {
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		svc.Spec.ClusterIP, svc.Spec.ClusterIPs = "", nil
		return nil
	}
	want := svc.Spec.ClusterIP
	if want == "" && len(svc.Spec.ClusterIPs) > 0 {
		want = svc.Spec.ClusterIPs[0]
	}
	if cur != nil && cur.Spec.Type != corev1.ServiceTypeExternalName && cur.Spec.ClusterIP != "" {
		// A ClusterIP never changes: left out means "keep it".
		if want != "" && want != cur.Spec.ClusterIP {
			return field.ErrorList{field.Invalid(p, want, "field is immutable")}
		}
		if cur.Spec.ClusterIP == corev1.ClusterIPNone && hasNodePorts(svc) {
			return field.ErrorList{field.Invalid(p, corev1.ClusterIPNone, fmt.Sprintf("may not be set to 'None' for %s services", svc.Spec.Type))}
		}
		svc.Spec.ClusterIP = cur.Spec.ClusterIP
		svc.Spec.ClusterIPs = []string{cur.Spec.ClusterIP}
		return nil
	}
	switch want {
	case corev1.ClusterIPNone:
		svc.Spec.ClusterIP, svc.Spec.ClusterIPs = corev1.ClusterIPNone, []string{corev1.ClusterIPNone}
		return nil
	case "":
		off := rangeOffset(a.size, 16, 256)
		i, ok := nextFree(a.size, off, func(i uint32) bool {
			ip := a.base + 1 + i
			_, taken := a.ips[ip]
			return !taken && !a.reserved[ip]
		})
		if !ok {
			return field.ErrorList{field.InternalError(p, fmt.Errorf("failed to allocate a serviceIP: range is full (the lab's service CIDR is %s)", a.cidr))}
		}
		ip := uintToIP4(a.base + 1 + i).String()
		svc.Spec.ClusterIP, svc.Spec.ClusterIPs = ip, []string{ip}
		return nil
	}
	ip := net.ParseIP(want).To4()
	if ip == nil {
		return field.ErrorList{field.Invalid(p, want, "must be a valid IPv4 address")}
	}
	n := ip4ToUint(ip)
	if !a.cidr.Contains(ip) || n == a.base || n > a.base+a.size {
		return field.ErrorList{field.Invalid(p, want, fmt.Sprintf("provided IP is not in the valid range. The range of valid IPs is %s", a.cidr))}
	}
	if owner, taken := a.ips[n]; taken && owner != keyOfService(svc) {
		return field.ErrorList{field.Invalid(p, want, "provided IP is already allocated")}
	}
	svc.Spec.ClusterIP, svc.Spec.ClusterIPs = want, []string{want}
	return nil
}

// portFree: no Service but me holds port for proto.
func (a *serviceAllocator) portFree(port int32, proto corev1.Protocol, me Key) bool {
	owner, taken := a.nodePorts[port][proto]
	return !taken || owner == me
}

// nextNodePort is the lowest NodePort no Service holds for any protocol and skip does not hold.
func (a *serviceAllocator) nextNodePort(skip map[int32]bool) (int32, error) {
	size := uint32(manifest.NodePortMax - manifest.NodePortMin + 1)
	i, ok := nextFree(size, rangeOffset(size, 32, 128), func(i uint32) bool {
		port := int32(manifest.NodePortMin + i)
		return len(a.nodePorts[port]) == 0 && !skip[port]
	})
	if !ok {
		return 0, errors.New("range is full")
	}
	return int32(manifest.NodePortMin + i), nil
}

func (a *serviceAllocator) admitNodePorts(svc, cur *corev1.Service, p *field.Path) field.ErrorList {
	ports, me := svc.Spec.Ports, keyOfService(svc)
	if !hasNodePorts(svc) {
		for i := range ports {
			ports[i].NodePort = 0
		}
		return nil
	}
	// Left-out NodePorts keep what the stored Service has for the port of the same name, unless
	// the new spec gives that number to another of its ports (kube-apiserver's patching).
	if cur != nil && hasNodePorts(cur) {
		inNew := map[int32]bool{}
		for _, sp := range ports {
			inNew[sp.NodePort] = true
		}
		old := map[string]int32{}
		for _, sp := range cur.Spec.Ports {
			old[sp.Name] = sp.NodePort
		}
		for i := range ports {
			if ports[i].NodePort == 0 && old[ports[i].Name] != 0 && !inNew[old[ports[i].Name]] {
				ports[i].NodePort = old[ports[i].Name]
			}
		}
	}
	requested := map[int32]bool{}
	for i, sp := range ports {
		if sp.NodePort == 0 {
			continue
		}
		if !a.portFree(sp.NodePort, sp.Protocol, me) {
			return field.ErrorList{field.Invalid(p.Index(i).Child("nodePort"), sp.NodePort, "provided port is already allocated")}
		}
		requested[sp.NodePort] = true
	}
	if !allocatesNodePorts(svc) {
		return nil
	}
	// Ports with the same port number share one NodePort, as in kube-apiserver.
	byPort := map[int32]int32{}
	for _, sp := range ports {
		if sp.NodePort != 0 && byPort[sp.Port] == 0 {
			byPort[sp.Port] = sp.NodePort
		}
	}
	for i := range ports {
		if ports[i].NodePort != 0 {
			continue
		}
		np := byPort[ports[i].Port]
		if np == 0 || !a.portFree(np, ports[i].Protocol, me) || sharesProtocol(ports, i, np) {
			var err error
			if np, err = a.nextNodePort(requested); err != nil {
				return field.ErrorList{field.InternalError(p.Index(i).Child("nodePort"), fmt.Errorf("failed to allocate a nodePort: %w", err))}
			}
		}
		ports[i].NodePort = np
		requested[np] = true
		byPort[ports[i].Port] = np
	}
	return nil
}

// sharesProtocol: another port of the list already uses nodePort np with port i's protocol.
func sharesProtocol(ports []corev1.ServicePort, i int, np int32) bool {
	for j, sp := range ports {
		if j != i && sp.NodePort == np && sp.Protocol == ports[i].Protocol {
			return true
		}
	}
	return false
}

func (a *serviceAllocator) admitHealthCheckNodePort(svc, cur *corev1.Service, p *field.Path) field.ErrorList {
	if !NeedsHealthCheckNodePort(svc) {
		svc.Spec.HealthCheckNodePort = 0
		return nil
	}
	want := svc.Spec.HealthCheckNodePort
	if cur != nil && NeedsHealthCheckNodePort(cur) && cur.Spec.HealthCheckNodePort != 0 {
		if want != 0 && want != cur.Spec.HealthCheckNodePort {
			return field.ErrorList{field.Invalid(p, want, "field is immutable")}
		}
		want = cur.Spec.HealthCheckNodePort
	}
	own := map[int32]bool{}
	for _, sp := range svc.Spec.Ports {
		own[sp.NodePort] = true
	}
	if want != 0 {
		if !a.portFree(want, corev1.ProtocolTCP, keyOfService(svc)) || own[want] {
			return field.ErrorList{field.Invalid(p, want, "provided port is already allocated")}
		}
		svc.Spec.HealthCheckNodePort = want
		return nil
	}
	np, err := a.nextNodePort(own)
	if err != nil {
		return field.ErrorList{field.InternalError(p, fmt.Errorf("failed to allocate a nodePort: %w", err))}
	}
	svc.Spec.HealthCheckNodePort = np
	return nil
}
