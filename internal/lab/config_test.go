package lab

import (
	"strings"
	"testing"
)

func TestConfigValidate(t *testing.T) {
	ok := DefaultConfig()
	if err := ok.Validate(); err != nil {
		t.Fatalf("default config: %v", err)
	}
	cases := []struct {
		name string
		mod  func(*Config)
		want string // substring of the error, naming the problem
	}{
		{"bad name", func(c *Config) { c.Name = "Bad_Name" }, "--name"},
		{"name with dot", func(c *Config) { c.Name = "a.b" }, "--name"},
		{"too long name", func(c *Config) { c.Name = "abcdefghijklmnopq" }, "--name"},
		{"zero nodes", func(c *Config) { c.Nodes = 0 }, "--nodes"},
		{"unknown backend", func(c *Config) { c.Backend = "ipip" }, "--backend"},
		{"pod cidr garbage", func(c *Config) { c.PodCIDR = "10.244.0.0/33" }, "--pod-cidr"},
		{"pod cidr host bits", func(c *Config) { c.PodCIDR = "10.244.0.1/16" }, "host bits"},
		{"ipv6 pod cidr", func(c *Config) { c.PodCIDR = "fd00::/64" }, "IPv4"},
		{"service cidr garbage", func(c *Config) { c.ServiceCIDR = "nope" }, "--service-cidr"},
		{"pod overlaps service", func(c *Config) { c.ServiceCIDR = "10.244.128.0/20" }, "overlaps"},
		{"service overlaps underlay", func(c *Config) { c.UnderlayCIDR = "10.96.5.0/24" }, "overlaps"},
		{"pod overlaps underlay", func(c *Config) { c.UnderlayCIDR = "10.0.0.0/8" }, "overlaps"},
		{"node cidr smaller than pod cidr", func(c *Config) { c.NodeCIDRSize = 8 }, "--node-cidr-size"},
		{"node cidr too small for nodes", func(c *Config) { c.PodCIDR = "10.244.0.0/23"; c.Nodes = 3 }, "--node-cidr-size"},
		{"underlay too small", func(c *Config) { c.UnderlayCIDR = "172.30.0.0/28" }, "--underlay-cidr"},
		{"bad domain", func(c *Config) { c.Domain = "Cluster Local" }, "--cluster-domain"},
		{"lb cidr garbage", func(c *Config) { c.LBCIDR = "nope" }, "--lb-cidr"},
		{"lb cidr missing", func(c *Config) { c.LBCIDR = "" }, "--lb-cidr"},
		{"lb cidr too small", func(c *Config) { c.LBCIDR = "172.31.255.0/31" }, "--lb-cidr"},
		{"lb overlaps underlay", func(c *Config) { c.LBCIDR = "172.30.0.128/25" }, "overlaps"},
		{"lb overlaps pod", func(c *Config) { c.LBCIDR = "10.244.7.0/24" }, "overlaps"},
		{"lb overlaps service", func(c *Config) { c.LBCIDR = "10.0.0.0/8" }, "overlaps"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.mod(&c)
			err := c.Validate()
			if err == nil {
				t.Fatalf("accepted %+v", c)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

// TestConfigWithDefaults: a lab saved before lbCIDR existed loads with a load-balancer range
// that overlaps none of its own.
func TestConfigWithDefaults(t *testing.T) {
	c := DefaultConfig()
	c.LBCIDR = ""
	if got := c.withDefaults(); got.LBCIDR != DefaultLBCIDR || got.Validate() != nil {
		t.Fatalf("old default lab: lbCIDR %q (%v)", got.LBCIDR, got.Validate())
	}
	c.UnderlayCIDR = "172.31.0.0/16"
	if got := c.withDefaults(); got.LBCIDR == DefaultLBCIDR || got.Validate() != nil {
		t.Fatalf("old lab on 172.31/16: lbCIDR %q (%v)", got.LBCIDR, got.Validate())
	}
	c.LBCIDR = "192.0.2.0/24"
	if got := c.withDefaults(); got.LBCIDR != "192.0.2.0/24" {
		t.Fatalf("a set lbCIDR changed to %q", got.LBCIDR)
	}
}

func TestNames(t *testing.T) {
	if got := PodNetns("lab", "default", "web"); got != "lab.pod.default.web" {
		t.Fatalf("PodNetns = %q", got)
	}
	long := PodNetns("lab", strings.Repeat("n", 63), strings.Repeat("p", 253))
	if len(long) > 200 || !strings.HasPrefix(long, NetnsPrefix("lab")) {
		t.Fatalf("long pod netns name %q (%d chars)", long, len(long))
	}
	if a, b := PodNetns("lab", "ns", strings.Repeat("p", 250)+"1"), PodNetns("lab", "ns", strings.Repeat("p", 250)+"2"); a == b {
		t.Fatal("truncated names collide")
	}
	ul := mustCIDR(DefaultUnderlayCIDR)
	if got := NodeAddress(ul, 3).String(); got != "172.30.0.13/24" {
		t.Fatalf("NodeAddress = %s", got)
	}
	if got := ExternalAddress(ul).String(); got != "172.30.0.254/24" {
		t.Fatalf("ExternalAddress = %s", got)
	}
	if NodeAddress(ul, MaxNodes).IP.Equal(ExternalAddress(ul).IP) {
		t.Fatal("the external client's address is a node's")
	}
	if got := ExternalNetns("lab"); got != "lab.external" || !strings.HasPrefix(got, NetnsPrefix("lab")) {
		t.Fatalf("ExternalNetns = %q", got)
	}
}
