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
}
