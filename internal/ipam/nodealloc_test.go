package ipam

import (
	"net"
	"strings"
	"testing"
)

func cidr(t *testing.T, s string) *net.IPNet {
	t.Helper()
	_, n, err := net.ParseCIDR(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestNewNodeAllocatorErrors(t *testing.T) {
	tests := []struct {
		cluster string
		mask    int
		wantErr string // empty: no error
		wantCap int
	}{
		{"10.244.0.0/16", 24, "", 256},
		{"10.244.0.0/16", 16, "", 1},
		{"10.244.0.0/16", 30, "", 1 << 14},
		{"10.0.0.0/8", 24, "", 1 << 16},
		{"10.244.0.0/16", 15, "smaller than the cluster CIDR's /16", 0},
		{"10.244.0.0/16", 31, "larger than /30", 0},
		{"fd00::/64", 80, "not an IPv4 CIDR", 0},
		{"0.0.0.0/0", 30, "more than the supported", 0},
	}
	for _, tt := range tests {
		a, err := NewNodeAllocator(cidr(t, tt.cluster), tt.mask)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%s /%d: error %v, want it to contain %q", tt.cluster, tt.mask, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s /%d: %v", tt.cluster, tt.mask, err)
			continue
		}
		if a.Capacity() != tt.wantCap {
			t.Errorf("%s /%d: capacity %d, want %d", tt.cluster, tt.mask, a.Capacity(), tt.wantCap)
		}
	}
	if _, err := NewNodeAllocator(nil, 24); err == nil {
		t.Error("nil cluster CIDR: no error")
	}
}

func TestNodeAllocatorAllocateLowestFree(t *testing.T) {
	a, err := NewNodeAllocator(cidr(t, "10.244.0.0/22"), 24)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for i := 0; i < 4; i++ {
		n, err := a.Allocate()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, n.String())
	}
	want := []string{"10.244.0.0/24", "10.244.1.0/24", "10.244.2.0/24", "10.244.3.0/24"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("allocated %v, want %v", got, want)
	}
	_, err = a.Allocate()
	if err == nil || !strings.Contains(err.Error(), "10.244.0.0/22 is full") || !strings.Contains(err.Error(), "4 node subnets") {
		t.Fatalf("allocate from a full cluster: %v", err)
	}
	a.Release(cidr(t, "10.244.2.0/24"))
	a.Release(cidr(t, "10.244.1.0/24"))
	if a.Used() != 2 {
		t.Fatalf("used %d after two releases, want 2", a.Used())
	}
	for _, want := range []string{"10.244.1.0/24", "10.244.2.0/24"} {
		n, err := a.Allocate()
		if err != nil || n.String() != want {
			t.Fatalf("allocate after release: %v %v, want %s", n, err, want)
		}
	}
}

func TestNodeAllocatorOccupy(t *testing.T) {
	a, err := NewNodeAllocator(cidr(t, "10.244.0.0/16"), 24)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"10.244.0.0/24", "10.244.1.0/24", "10.244.3.0/24"} {
		if err := a.Occupy(cidr(t, s)); err != nil {
			t.Fatalf("occupy %s: %v", s, err)
		}
	}
	// Occupying twice is harmless (a restarted daemon re-reading Nodes).
	if err := a.Occupy(cidr(t, "10.244.3.0/24")); err != nil {
		t.Fatal(err)
	}
	if a.Used() != 3 {
		t.Fatalf("used %d, want 3", a.Used())
	}
	if !a.IsAllocated(cidr(t, "10.244.3.0/24")) || a.IsAllocated(cidr(t, "10.244.2.0/24")) {
		t.Fatal("IsAllocated disagrees with Occupy")
	}
	for _, want := range []string{"10.244.2.0/24", "10.244.4.0/24"} {
		n, err := a.Allocate()
		if err != nil || n.String() != want {
			t.Fatalf("allocate: %v %v, want %s", n, err, want)
		}
	}

	bad := []struct {
		subnet, wantErr string
	}{
		{"10.245.0.0/24", "outside the cluster CIDR"},
		{"10.244.5.0/25", "prefix length /25, want /24"},
		{"10.244.0.0/16", "prefix length /16, want /24"},
		{"fd00::/24", "not an IPv4 CIDR"},
	}
	for _, b := range bad {
		err := a.Occupy(cidr(t, b.subnet))
		if err == nil || !strings.Contains(err.Error(), b.wantErr) {
			t.Errorf("occupy %s: %v, want %q", b.subnet, err, b.wantErr)
		}
	}
	// Host bits set: ParseCIDR masks them, so build the IPNet by hand.
	err = a.Occupy(&net.IPNet{IP: net.ParseIP("10.244.7.9").To4(), Mask: net.CIDRMask(24, 32)})
	if err == nil || !strings.Contains(err.Error(), "host bits set") {
		t.Errorf("occupy with host bits: %v", err)
	}
	// Releasing something outside the cluster is a no-op.
	a.Release(cidr(t, "192.168.0.0/24"))
	if a.Used() != 5 {
		t.Fatalf("used %d, want 5", a.Used())
	}
}

func TestNodeAllocatorLargeBitmap(t *testing.T) {
	// Non-multiple-of-64 tail and many words: /8 split into /26 (2^18 subnets).
	a, err := NewNodeAllocator(cidr(t, "10.0.0.0/8"), 26)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 200; i++ {
		if _, err := a.Allocate(); err != nil {
			t.Fatal(err)
		}
	}
	n, err := a.Allocate()
	if err != nil || n.String() != "10.0.50.0/26" {
		t.Fatalf("201st subnet %v %v, want 10.0.50.0/26", n, err)
	}

	small, err := NewNodeAllocator(cidr(t, "10.1.0.0/24"), 27)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 8; i++ {
		if _, err := small.Allocate(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := small.Allocate(); err == nil {
		t.Fatal("9th /27 of a /24: no error")
	}
}
