// Package lab runs a whole multi-node Kubernetes network on one Linux host: nodes and pods are
// network namespaces, the cluster's objects live in an embedded store behind client-go's
// kubernetes.Interface, and one node agent per node programs the kernel exactly as it would on a
// real cluster.
package lab

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"

	"github.com/podnet/podnet/internal/ipam"
)

// Defaults of `podnet lab up`.
const (
	DefaultName         = "podnet"
	DefaultNodes        = 2
	DefaultBackend      = "vxlan"
	DefaultPodCIDR      = "10.244.0.0/16"
	DefaultNodeCIDRSize = 24
	DefaultServiceCIDR  = "10.96.0.0/16"
	DefaultUnderlayCIDR = "172.30.0.0/24"
	DefaultDomain       = "cluster.local"
	// DefaultLBCIDR is where LoadBalancer Services get their ingress IPs: addresses outside every
	// other lab range, reached from LAB.external through the lab's LAN router.
	DefaultLBCIDR = "172.31.255.0/24"
	// MaxNodes bounds the lab size: node i gets underlay address .(10+i).
	MaxNodes = 200
)

// Config describes one lab. It is validated once, stored in the lab's state directory, and read back
// by every later command and by a restarted daemon.
type Config struct {
	Name         string `json:"name"`
	Nodes        int    `json:"nodes"`
	Backend      string `json:"backend"`
	PodCIDR      string `json:"podCIDR"`
	NodeCIDRSize int    `json:"nodeCIDRSize"`
	ServiceCIDR  string `json:"serviceCIDR"`
	UnderlayCIDR string `json:"underlayCIDR"`
	Domain       string `json:"clusterDomain"`
	LBCIDR       string `json:"lbCIDR"`
}

// DefaultConfig returns the configuration `podnet lab up` uses without flags.
func DefaultConfig() Config {
	return Config{
		Name: DefaultName, Nodes: DefaultNodes, Backend: DefaultBackend, PodCIDR: DefaultPodCIDR,
		NodeCIDRSize: DefaultNodeCIDRSize, ServiceCIDR: DefaultServiceCIDR,
		UnderlayCIDR: DefaultUnderlayCIDR, Domain: DefaultDomain, LBCIDR: DefaultLBCIDR,
	}
}

var labNameRE = regexp.MustCompile(`^[a-z]([a-z0-9-]{0,14}[a-z0-9])?$`)

// Backends lists the routing backends a lab can use.
var Backends = []string{"vxlan", "host-gw"}

// Validate checks every field and returns one error naming the first problem.
func (c Config) Validate() error {
	if !labNameRE.MatchString(c.Name) {
		return fmt.Errorf("--name %q: a lab name is 1-16 characters of a-z, 0-9 and '-', starting with a letter and ending with a letter or digit", c.Name)
	}
	if c.Nodes < 1 || c.Nodes > MaxNodes {
		return fmt.Errorf("--nodes %d: must be between 1 and %d", c.Nodes, MaxNodes)
	}
	okBackend := false
	for _, b := range Backends {
		okBackend = okBackend || b == c.Backend
	}
	if !okBackend {
		return fmt.Errorf("--backend %q: must be one of %v", c.Backend, Backends)
	}
	pod, err := parseCIDR("--pod-cidr", c.PodCIDR)
	if err != nil {
		return err
	}
	svc, err := parseCIDR("--service-cidr", c.ServiceCIDR)
	if err != nil {
		return err
	}
	ul, err := parseCIDR("--underlay-cidr", c.UnderlayCIDR)
	if err != nil {
		return err
	}
	lb, err := parseCIDR("--lb-cidr", c.LBCIDR)
	if err != nil {
		return err
	}
	if ones, _ := ul.Mask.Size(); ones > 24 {
		return fmt.Errorf("--underlay-cidr %s: must be /24 or larger (node i takes host address .%d+i)", c.UnderlayCIDR, 10)
	}
	if ones, _ := svc.Mask.Size(); ones > 28 {
		return fmt.Errorf("--service-cidr %s: must be /28 or larger", c.ServiceCIDR)
	}
	if ones, _ := lb.Mask.Size(); ones > 30 {
		return fmt.Errorf("--lb-cidr %s: must be /30 or larger", c.LBCIDR)
	}
	for _, p := range []struct {
		a, b   string
		na, nb *net.IPNet
	}{{"--pod-cidr", "--service-cidr", pod, svc}, {"--pod-cidr", "--underlay-cidr", pod, ul}, {"--service-cidr", "--underlay-cidr", svc, ul},
		{"--lb-cidr", "--pod-cidr", lb, pod}, {"--lb-cidr", "--service-cidr", lb, svc}, {"--lb-cidr", "--underlay-cidr", lb, ul}} {
		if overlaps(p.na, p.nb) {
			return fmt.Errorf("%s %s overlaps %s %s: pod, service, underlay and load-balancer ranges must not overlap", p.a, p.na, p.b, p.nb)
		}
	}
	podOnes, _ := pod.Mask.Size()
	if c.NodeCIDRSize < podOnes || c.NodeCIDRSize > 28 {
		return fmt.Errorf("--node-cidr-size %d: must be between the pod CIDR's prefix length /%d and /28", c.NodeCIDRSize, podOnes)
	}
	alloc, err := ipam.NewNodeAllocator(pod, c.NodeCIDRSize)
	if err != nil {
		return fmt.Errorf("--node-cidr-size %d: %v", c.NodeCIDRSize, err)
	}
	if alloc.Capacity() < c.Nodes {
		return fmt.Errorf("--node-cidr-size %d: --pod-cidr %s holds only %d node ranges of /%d, fewer than --nodes %d", c.NodeCIDRSize, c.PodCIDR, alloc.Capacity(), c.NodeCIDRSize, c.Nodes)
	}
	if !regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$`).MatchString(c.Domain) {
		return fmt.Errorf("--cluster-domain %q: must be a DNS name", c.Domain)
	}
	return nil
}

func overlaps(a, b *net.IPNet) bool { return a.Contains(b.IP) || b.Contains(a.IP) }

// lbCIDRCandidates are the load-balancer ranges a lab created before lbCIDR existed gets: the
// first that overlaps none of its ranges.
var lbCIDRCandidates = []string{DefaultLBCIDR, "192.168.255.0/24", "10.255.255.0/24", "100.127.255.0/24"}

// withDefaults fills fields an older lab's stored configuration lacks.
func (c Config) withDefaults() Config {
	if c.LBCIDR != "" {
		return c
	}
	c.LBCIDR = DefaultLBCIDR
	var taken []*net.IPNet
	for _, s := range []string{c.PodCIDR, c.ServiceCIDR, c.UnderlayCIDR} {
		if _, n, err := net.ParseCIDR(s); err == nil {
			taken = append(taken, n)
		}
	}
	for _, cand := range lbCIDRCandidates {
		n := mustCIDR(cand)
		free := true
		for _, t := range taken {
			free = free && !overlaps(n, t)
		}
		if free {
			c.LBCIDR = cand
			break
		}
	}
	return c
}

func parseCIDR(flag, s string) (*net.IPNet, error) {
	ip, n, err := net.ParseCIDR(s)
	if err != nil {
		return nil, fmt.Errorf("%s %q: not a CIDR (want e.g. 10.244.0.0/16)", flag, s)
	}
	if ip.To4() == nil {
		return nil, fmt.Errorf("%s %q: only IPv4 ranges are supported", flag, s)
	}
	if !ip.Equal(n.IP) {
		return nil, fmt.Errorf("%s %q: host bits set; did you mean %s?", flag, s, n)
	}
	return n, nil
}

func mustCIDR(s string) *net.IPNet {
	_, n, err := net.ParseCIDR(s)
	if err != nil {
		panic(err)
	}
	return n
}

// StateRoot is where labs keep their state: $PODNET_STATE_ROOT, else /var/lib/podnet/labs.
func StateRoot() string {
	if d := os.Getenv("PODNET_STATE_ROOT"); d != "" {
		return d
	}
	return "/var/lib/podnet/labs"
}

// Paths names every file of one lab's state directory.
type Paths struct{ Dir string }

// PathsFor returns the state paths of the lab called name.
func PathsFor(name string) Paths { return Paths{Dir: filepath.Join(StateRoot(), name)} }

func (p Paths) Config() string   { return filepath.Join(p.Dir, "config.json") }
func (p Paths) Objects() string  { return filepath.Join(p.Dir, "objects.json") }
func (p Paths) Socket() string   { return filepath.Join(p.Dir, "daemon.sock") }
func (p Paths) PIDFile() string  { return filepath.Join(p.Dir, "daemon.pid") }
func (p Paths) Log() string      { return filepath.Join(p.Dir, "daemon.log") }
func (p Paths) CNICache() string { return filepath.Join(p.Dir, "cni-cache") }

// APISocket is where the lab serves its read-only Kubernetes API (see RestConfig).
func (p Paths) APISocket() string { return filepath.Join(p.Dir, "api.sock") }

// NodeDir holds one node's IPAM state and CNI configuration.
func (p Paths) NodeDir(node string) string { return filepath.Join(p.Dir, "nodes", node) }

// PodDir holds one pod's log and pid file.
func (p Paths) PodDir(ns, name string) string { return filepath.Join(p.Dir, "pods", ns+"_"+name) }

// LoadConfig reads a lab's stored configuration; a missing lab is a clear error.
func LoadConfig(name string) (Config, error) {
	p := PathsFor(name)
	b, err := os.ReadFile(p.Config())
	if os.IsNotExist(err) {
		return Config{}, fmt.Errorf("lab %q does not exist (no %s); start it with `podnet lab up --name %s`", name, p.Config(), name)
	}
	if err != nil {
		return Config{}, err
	}
	var c Config
	if err := json.Unmarshal(b, &c); err != nil {
		return Config{}, fmt.Errorf("lab %q: corrupt %s: %v", name, p.Config(), err)
	}
	return c.withDefaults(), nil
}
