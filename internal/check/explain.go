// Package check answers questions about the cluster network: why a connection is allowed or
// denied (Explain), from the same compiled NetworkPolicy model the nodes' rules come from.
package check

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/podnet/podnet/internal/policy"
)

// Snapshot is the part of the cluster an explanation needs.
type Snapshot struct {
	Policies   []*networkingv1.NetworkPolicy
	Pods       []*corev1.Pod
	Namespaces []*corev1.Namespace
	Services   []*corev1.Service
	Slices     []*discoveryv1.EndpointSlice
}

// Load lists the snapshot from the cluster (a lab's API or a real one).
func Load(ctx context.Context, c kubernetes.Interface) (*Snapshot, error) {
	s := &Snapshot{}
	all := metav1.ListOptions{}
	pols, err := c.NetworkingV1().NetworkPolicies("").List(ctx, all)
	if err != nil {
		return nil, fmt.Errorf("list networkpolicies: %w", err)
	}
	for i := range pols.Items {
		s.Policies = append(s.Policies, &pols.Items[i])
	}
	pods, err := c.CoreV1().Pods("").List(ctx, all)
	if err != nil {
		return nil, fmt.Errorf("list pods: %w", err)
	}
	for i := range pods.Items {
		s.Pods = append(s.Pods, &pods.Items[i])
	}
	nss, err := c.CoreV1().Namespaces().List(ctx, all)
	if err != nil {
		return nil, fmt.Errorf("list namespaces: %w", err)
	}
	for i := range nss.Items {
		s.Namespaces = append(s.Namespaces, &nss.Items[i])
	}
	svcs, err := c.CoreV1().Services("").List(ctx, all)
	if err != nil {
		return nil, fmt.Errorf("list services: %w", err)
	}
	for i := range svcs.Items {
		s.Services = append(s.Services, &svcs.Items[i])
	}
	slices, err := c.DiscoveryV1().EndpointSlices("").List(ctx, all)
	if err != nil {
		return nil, fmt.Errorf("list endpointslices: %w", err)
	}
	for i := range slices.Items {
		s.Slices = append(s.Slices, &slices.Items[i])
	}
	return s, nil
}

// Endpoint is one end of a connection: a pod or a plain address.
type Endpoint struct {
	Pod  string     `json:"pod,omitempty"` // namespace/name
	IP   netip.Addr `json:"ip"`
	Port uint16     `json:"port,omitempty"`
}

func (e Endpoint) String() string {
	addr := e.IP.String()
	if e.Port != 0 {
		addr = net.JoinHostPort(addr, strconv.Itoa(int(e.Port)))
	}
	if e.Pod == "" {
		return addr
	}
	return e.Pod + " (" + addr + ")"
}

// Flow is one connection as a node judges it: from a pod or address to a pod or address,
// after Service DNAT.
type Flow struct {
	From, To Endpoint
	// Service is the Service the connection was addressed to ("namespace/name IP:port/proto"),
	// empty when it went to To directly.
	Service string         `json:",omitempty"`
	Verdict policy.Verdict `json:"-"`
	Allowed bool
	Text    string // the verdict explained, one line per direction and rule
}

// Result is the answer to one question.
type Result struct {
	Flows []Flow
	// Note explains an answer without flows (a Service without endpoints).
	Note string `json:",omitempty"`
}

// Allowed says whether every flow of the result is allowed (false when there are none).
func (r *Result) Allowed() bool {
	for _, f := range r.Flows {
		if !f.Allowed {
			return false
		}
	}
	return len(r.Flows) > 0
}

// Format renders the result for people.
func (r *Result) Format() string {
	var b strings.Builder
	for i, f := range r.Flows {
		if i > 0 {
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "%s -> ", f.From)
		if f.Service != "" {
			fmt.Fprintf(&b, "Service %s -> ", f.Service)
		}
		fmt.Fprintf(&b, "%s %s\n", f.To, f.Verdict.Protocol)
		b.WriteString(f.Text)
	}
	if r.Note != "" {
		b.WriteString(r.Note + "\n")
	}
	return b.String()
}

// Explain answers "may from connect to to over proto?" from the snapshot. from is
// NAMESPACE/POD or an IP; to is NAMESPACE/POD[:PORT] or IP[:PORT], where an IP may be a
// Service's cluster IP (then every endpoint behind the port is judged, as the kernel judges
// the connection after DNAT). Without a port, a destination pod is judged on each of its
// declared container ports (of proto, when proto is given).
func Explain(s *Snapshot, from, to string, proto corev1.Protocol) (*Result, error) {
	if proto != "" && policy.ProtocolNumber(proto) == 0 {
		return nil, fmt.Errorf("--protocol %q: want TCP, UDP or SCTP", proto)
	}
	m := policy.Compile(s.Policies, s.Pods, s.Namespaces)
	src, err := s.endpoint(m, from, false)
	if err != nil {
		return nil, fmt.Errorf("--from %s: %w", from, err)
	}
	dst, err := s.endpoint(m, to, true)
	if err != nil {
		return nil, fmt.Errorf("--to %s: %w", to, err)
	}
	judge := func(dst Endpoint, p corev1.Protocol, service string) Flow {
		v := m.Evaluate(src.IP, dst.IP, p, dst.Port)
		return Flow{From: src, To: dst, Service: service, Verdict: v, Allowed: v.Allowed, Text: v.Explain()}
	}
	res := &Result{}
	if svc := s.serviceByIP(dst.IP); svc != nil {
		if dst.Port == 0 {
			return nil, fmt.Errorf("--to %s: %s is Service %s/%s: give the port (IP:PORT)", to, dst.IP, svc.Namespace, svc.Name)
		}
		p := proto
		if p == "" {
			p = corev1.ProtocolTCP
		}
		var sp *corev1.ServicePort
		for i := range svc.Spec.Ports {
			if svc.Spec.Ports[i].Port == int32(dst.Port) && svc.Spec.Ports[i].Protocol == p {
				sp = &svc.Spec.Ports[i]
			}
		}
		if sp == nil {
			return nil, fmt.Errorf("--to %s: Service %s/%s has no %s port %d", to, svc.Namespace, svc.Name, p, dst.Port)
		}
		name := fmt.Sprintf("%s/%s %s/%s", svc.Namespace, svc.Name, net.JoinHostPort(dst.IP.String(), strconv.Itoa(int(dst.Port))), p)
		for _, ep := range s.endpointsOf(svc, sp) {
			ep.Pod = podName(m, ep.IP)
			res.Flows = append(res.Flows, judge(ep, p, name))
		}
		if len(res.Flows) == 0 {
			res.Note = fmt.Sprintf("Service %s has no ready endpoints: the proxy refuses the connection before any policy applies", name)
		}
		return res, nil
	}
	if dst.Port != 0 {
		p := proto
		if p == "" {
			p = corev1.ProtocolTCP
		}
		res.Flows = append(res.Flows, judge(dst, p, ""))
		return res, nil
	}
	pod := m.PodByIP(dst.IP)
	if pod == nil {
		return nil, fmt.Errorf("--to %s: not a pod: give the port (IP:PORT)", to)
	}
	for _, cp := range pod.Ports {
		p := cp.Protocol
		if p == "" {
			p = corev1.ProtocolTCP
		}
		if proto != "" && p != proto {
			continue
		}
		d := dst
		d.Port = uint16(cp.ContainerPort)
		res.Flows = append(res.Flows, judge(d, p, ""))
	}
	if len(res.Flows) == 0 {
		return nil, fmt.Errorf("--to %s: the pod declares no %scontainer ports: give the port (%s:PORT)", to, protoWord(proto), to)
	}
	return res, nil
}

func protoWord(p corev1.Protocol) string {
	if p == "" {
		return ""
	}
	return string(p) + " "
}

func podName(m *policy.Model, ip netip.Addr) string {
	if p := m.PodByIP(ip); p != nil {
		return p.Ref.String()
	}
	return ""
}

// endpoint parses NAMESPACE/POD[:PORT] or IP[:PORT] (the port only when withPort).
func (s *Snapshot) endpoint(m *policy.Model, arg string, withPort bool) (Endpoint, error) {
	var e Endpoint
	host, port := arg, ""
	if h, p, err := net.SplitHostPort(arg); err == nil {
		host, port = h, p
	} else if i := strings.LastIndex(arg, ":"); i > 0 && strings.Contains(arg, "/") {
		host, port = arg[:i], arg[i+1:]
	}
	if port != "" {
		if !withPort {
			return e, fmt.Errorf("a source has no port")
		}
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil || n == 0 {
			return e, fmt.Errorf("port %q: want 1-65535", port)
		}
		e.Port = uint16(n)
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		e.IP = ip.Unmap()
		e.Pod = podName(m, e.IP)
		return e, nil
	}
	ns, name, ok := strings.Cut(host, "/")
	if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
		return e, fmt.Errorf("want NAMESPACE/POD or an IP address")
	}
	pod := m.Pod(policy.PodRef{Namespace: ns, Name: name})
	if pod == nil {
		for _, p := range s.Pods {
			if p.Namespace == ns && p.Name == name {
				return e, fmt.Errorf("pod %s/%s has no IP (not running)", ns, name)
			}
		}
		return e, fmt.Errorf("no pod %s in namespace %s", name, ns)
	}
	if len(pod.IPs) == 0 {
		return e, fmt.Errorf("pod %s/%s has no IP", ns, name)
	}
	e.IP, e.Pod = pod.IPs[0], pod.Ref.String()
	return e, nil
}

func (s *Snapshot) serviceByIP(ip netip.Addr) *corev1.Service {
	for _, svc := range s.Services {
		for _, c := range append([]string{svc.Spec.ClusterIP}, svc.Spec.ClusterIPs...) {
			if a, err := netip.ParseAddr(c); err == nil && a == ip {
				return svc
			}
		}
	}
	return nil
}

// endpointsOf lists the ready endpoints behind one Service port, with their target ports.
func (s *Snapshot) endpointsOf(svc *corev1.Service, sp *corev1.ServicePort) []Endpoint {
	seen := map[Endpoint]bool{}
	var out []Endpoint
	for _, sl := range s.Slices {
		if sl.Namespace != svc.Namespace || sl.Labels[discoveryv1.LabelServiceName] != svc.Name {
			continue
		}
		var port uint16
		for _, p := range sl.Ports {
			name, proto := "", corev1.ProtocolTCP
			if p.Name != nil {
				name = *p.Name
			}
			if p.Protocol != nil {
				proto = *p.Protocol
			}
			if name == sp.Name && proto == sp.Protocol && p.Port != nil {
				port = uint16(*p.Port)
			}
		}
		if port == 0 {
			continue
		}
		for _, ep := range sl.Endpoints {
			if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
				continue
			}
			for _, a := range ep.Addresses {
				if ip, err := netip.ParseAddr(a); err == nil {
					e := Endpoint{IP: ip.Unmap(), Port: port}
					if !seen[e] {
						seen[e] = true
						out = append(out, e)
					}
				}
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].IP.Less(out[j].IP) })
	return out
}
