package cni

import (
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
)

func TestParseConfig(t *testing.T) {
	const base = `"cniVersion":"1.1.0","name":"podnet","type":"podnet-cni"`
	tests := []struct {
		name    string
		json    string
		code    uint   // 0: valid
		wantErr string // substring of the message
	}{
		{"minimal", `{` + base + `,"podCIDR":"10.244.1.0/24","dataDir":"/var/lib/podnet/ipam","mtu":1450}`, 0, ""},
		{"all fields", `{` + base + `,"bridge":"br-x","podCIDR":"10.244.1.0/24","dataDir":"/d","mtu":9000,"hairpinMode":false,"dns":{"nameservers":["10.96.0.10"]}}`, 0, ""},
		{"not json", `{`, types.ErrDecodingFailure, "network config"},
		{"no podCIDR", `{` + base + `,"dataDir":"/d","mtu":1450}`, types.ErrInvalidNetworkConfig, "podCIDR: missing"},
		{"bad podCIDR", `{` + base + `,"podCIDR":"10.244.1.0","dataDir":"/d","mtu":1450}`, types.ErrInvalidNetworkConfig, `podCIDR "10.244.1.0": not a CIDR`},
		{"ipv6 podCIDR", `{` + base + `,"podCIDR":"fd00::/64","dataDir":"/d","mtu":1450}`, types.ErrInvalidNetworkConfig, "not IPv4"},
		{"host bits", `{` + base + `,"podCIDR":"10.244.1.7/24","dataDir":"/d","mtu":1450}`, types.ErrInvalidNetworkConfig, "did you mean 10.244.1.0/24"},
		{"tiny podCIDR", `{` + base + `,"podCIDR":"10.244.1.0/31","dataDir":"/d","mtu":1450}`, types.ErrInvalidNetworkConfig, "podCIDR \"10.244.1.0/31\": too small"},
		{"podCIDR number", `{` + base + `,"podCIDR":24,"dataDir":"/d","mtu":1450}`, types.ErrInvalidNetworkConfig, "podCIDR: must be a string"},
		{"no dataDir", `{` + base + `,"podCIDR":"10.244.1.0/24","mtu":1450}`, types.ErrInvalidNetworkConfig, "dataDir: missing"},
		{"relative dataDir", `{` + base + `,"podCIDR":"10.244.1.0/24","dataDir":"ipam","mtu":1450}`, types.ErrInvalidNetworkConfig, `dataDir "ipam": not an absolute path`},
		{"no mtu", `{` + base + `,"podCIDR":"10.244.1.0/24","dataDir":"/d"}`, types.ErrInvalidNetworkConfig, "mtu: missing"},
		{"mtu low", `{` + base + `,"podCIDR":"10.244.1.0/24","dataDir":"/d","mtu":575}`, types.ErrInvalidNetworkConfig, "mtu 575: out of range 576..65535"},
		{"mtu high", `{` + base + `,"podCIDR":"10.244.1.0/24","dataDir":"/d","mtu":65536}`, types.ErrInvalidNetworkConfig, "mtu 65536: out of range"},
		{"mtu string", `{` + base + `,"podCIDR":"10.244.1.0/24","dataDir":"/d","mtu":"1450"}`, types.ErrInvalidNetworkConfig, "mtu: must be a number, not a JSON string"},
		{"hairpin string", `{` + base + `,"podCIDR":"10.244.1.0/24","dataDir":"/d","mtu":1450,"hairpinMode":"yes"}`, types.ErrInvalidNetworkConfig, "hairpinMode: must be a boolean"},
		{"bridge too long", `{` + base + `,"bridge":"a-very-long-bridge-name","podCIDR":"10.244.1.0/24","dataDir":"/d","mtu":1450}`, types.ErrInvalidNetworkConfig, `bridge "a-very-long-bridge-name": longer than 15`},
		{"bridge empty", `{` + base + `,"bridge":"","podCIDR":"10.244.1.0/24","dataDir":"/d","mtu":1450}`, types.ErrInvalidNetworkConfig, `bridge "": empty`},
		{"bridge slash", `{` + base + `,"bridge":"a/b","podCIDR":"10.244.1.0/24","dataDir":"/d","mtu":1450}`, types.ErrInvalidNetworkConfig, `bridge "a/b"`},
		{"no cniVersion", `{"name":"podnet","podCIDR":"10.244.1.0/24","dataDir":"/d","mtu":1450}`, types.ErrInvalidNetworkConfig, "cniVersion: missing"},
		{"no name", `{"cniVersion":"1.1.0","podCIDR":"10.244.1.0/24","dataDir":"/d","mtu":1450}`, types.ErrInvalidNetworkConfig, "name: missing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conf, err := ParseConfig([]byte(tt.json))
			if tt.code == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", tt.wantErr)
			}
			e, ok := err.(*types.Error)
			if !ok {
				t.Fatalf("error %v is %T, want *types.Error", err, err)
			}
			if e.Code != tt.code || !strings.Contains(e.Msg, tt.wantErr) {
				t.Fatalf("error code %d %q, want code %d containing %q (conf %+v)", e.Code, e.Msg, tt.code, tt.wantErr, conf)
			}
		})
	}
}

func TestParseConfigDefaults(t *testing.T) {
	c, err := ParseConfig([]byte(`{"cniVersion":"1.0.0","name":"n","type":"podnet-cni","podCIDR":"10.244.1.0/24","dataDir":"/d","mtu":1450}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Bridge != DefaultBridge || !c.Hairpin() || c.Subnet.String() != "10.244.1.0/24" || c.MTU != 1450 {
		t.Fatalf("defaults: %+v hairpin=%v", c, c.Hairpin())
	}
	c, err = ParseConfig([]byte(`{"cniVersion":"1.0.0","name":"n","podCIDR":"10.244.1.0/24","dataDir":"/d","mtu":1450,"hairpinMode":false,"bridge":"cbr0"}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Hairpin() || c.Bridge != "cbr0" {
		t.Fatalf("overrides not applied: %+v", c)
	}
}

func TestHostVethName(t *testing.T) {
	a := HostVethName("0123456789abcdef", "eth0")
	if len(a) != 12 || !isHostVethName(a) {
		t.Fatalf("HostVethName = %q, want pn + 10 hex digits", a)
	}
	if a != HostVethName("0123456789abcdef", "eth0") {
		t.Fatal("not deterministic")
	}
	if a == HostVethName("0123456789abcdef", "eth1") || a == HostVethName("0123456789abcdee", "eth0") {
		t.Fatal("different attachments share a host veth name")
	}
	for _, bad := range []string{"pn0123456789a", "pn012345678", "pn012345678G", "px0123456789", "eth0"} {
		if isHostVethName(bad) {
			t.Errorf("isHostVethName(%q) = true", bad)
		}
	}
	// The separator keeps ("ab","c") and ("a","bc") apart.
	if HostVethName("ab", "c") == HostVethName("a", "bc") {
		t.Fatal("ambiguous concatenation")
	}
}

func TestElementKey(t *testing.T) {
	k := elementKey("pn0123456789", []byte{10, 244, 1, 2})
	if len(k) != 20 || string(k[:12]) != "pn0123456789" || k[12] != 0 || k[15] != 0 || k[16] != 10 || k[19] != 2 {
		t.Fatalf("key %x", k)
	}
}
