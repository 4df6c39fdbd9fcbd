package proxy

import (
	"net/netip"
	"testing"
)

func TestParsePickName(t *testing.T) {
	for _, p := range []Pick{{View: 0, N: 3, Masq: MasqOffCluster}, {View: 1, N: 1, NodePort: true, Masq: MasqAlways, Affinity: 10800},
		{View: 2, N: 12, NodePort: true, Masq: MasqAlways}, {View: 1, N: 2}} {
		got, ok := ParsePickName(p.Name())
		if !ok || got != p {
			t.Errorf("%s: got %+v %v", p.Name(), got, ok)
		}
	}
	for _, bad := range []string{"services", "pick-v1", "pick-v1-n0", "pick-v1-n2-foo", "pick-v1-n2-aff0", "pick-vx-n2"} {
		if _, ok := ParsePickName(bad); ok {
			t.Errorf("%s parsed", bad)
		}
	}
}

// TestReadRuleset: what is read back from the kernel is the rendered ruleset, with no problems.
func TestReadRuleset(t *testing.T) {
	needRoot(t)
	_, h := testNetns(t, "read")
	k, err := NewKernel(int(h))
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	opt := Options{ClusterCIDR: clusterCIDR}
	rs := Render(sampleSnapshot(), opt)
	if _, err := k.Apply(rs); err != nil {
		t.Fatal(err)
	}
	got, problems, err := k.ReadRuleset(opt)
	if err != nil || len(problems) > 0 {
		t.Fatalf("%v %v", problems, err)
	}
	if got.Text(true) != rs.Text(true) {
		t.Fatalf("read back:\n%s\nwant:\n%s", got.Text(true), rs.Text(true))
	}
	if _, problems, _ = k.ReadRuleset(Options{ClusterCIDR: mustPrefix("10.0.0.0/8")}); len(problems) == 0 {
		t.Fatal("a table rendered for another cluster CIDR read back without problems")
	}
}

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }
