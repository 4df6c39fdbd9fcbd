package ipam

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
)

func openStore(t *testing.T, dir, subnet string) *Store {
	t.Helper()
	s, err := Open(dir, cidr(t, subnet))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func mustAlloc(t *testing.T, s *Store, id, ifName string) net.IP {
	t.Helper()
	ip, err := s.Allocate(id, ifName)
	if err != nil {
		t.Fatalf("allocate %s/%s: %v", id, ifName, err)
	}
	return ip
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		dir, subnet, wantErr string
	}{
		{"", "10.244.1.0/24", "data directory: missing"},
		{dir, "fd00::/64", "not an IPv4 CIDR"},
		{dir, "10.244.1.0/31", "too small"},
		{filepath.Join(dir, "file", "sub"), "10.244.1.0/24", "data directory"},
	}
	if err := os.WriteFile(filepath.Join(dir, "file"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		_, err := Open(tt.dir, cidr(t, tt.subnet))
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("Open(%q, %s): %v, want %q", tt.dir, tt.subnet, err, tt.wantErr)
		}
	}
	if _, err := Open(dir, nil); err == nil {
		t.Error("nil subnet: no error")
	}
}

func TestStoreAddressPlan(t *testing.T) {
	s := openStore(t, t.TempDir(), "10.244.1.0/24")
	if got := s.Gateway().String(); got != "10.244.1.1" {
		t.Errorf("gateway %s, want 10.244.1.1", got)
	}
	if s.Capacity() != 253 {
		t.Errorf("capacity %d, want 253", s.Capacity())
	}
	if got := mustAlloc(t, s, "c1", "eth0").String(); got != "10.244.1.2" {
		t.Errorf("first pod IP %s, want 10.244.1.2", got)
	}
	free, err := s.Free()
	if err != nil || free != 252 {
		t.Errorf("free %d %v, want 252", free, err)
	}
	// The record is the documented format.
	b, err := os.ReadFile(filepath.Join(s.Dir(), "10.244.1.2"))
	if err != nil || string(b) != "c1\neth0\n" {
		t.Errorf("record %q %v", b, err)
	}
}

func TestStoreExhaustionReleaseAndRoundRobin(t *testing.T) {
	// A /29: .0 node, .1 gateway, .2-.6 pods, .7 broadcast.
	s := openStore(t, t.TempDir(), "10.9.0.0/29")
	var got []string
	for i := 0; i < 5; i++ {
		got = append(got, mustAlloc(t, s, fmt.Sprintf("c%d", i), "eth0").String())
	}
	if want := "10.9.0.2,10.9.0.3,10.9.0.4,10.9.0.5,10.9.0.6"; strings.Join(got, ",") != want {
		t.Fatalf("allocated %v, want %s", got, want)
	}
	_, err := s.Allocate("c5", "eth0")
	if err == nil || !strings.Contains(err.Error(), "podCIDR 10.9.0.0/29 is exhausted") || !strings.Contains(err.Error(), "5 pod addresses") {
		t.Fatalf("allocate from a full range: %v", err)
	}
	if free, _ := s.Free(); free != 0 {
		t.Fatalf("free %d, want 0", free)
	}

	ok, err := s.Release("c1", "eth0")
	if !ok || err != nil {
		t.Fatalf("release c1: %v %v", ok, err)
	}
	ok, err = s.Release("c1", "eth0")
	if ok || err != nil {
		t.Fatalf("second release c1: %v %v, want false <nil>", ok, err)
	}
	ok, err = s.Release("c3", "eth0")
	if !ok || err != nil {
		t.Fatalf("release c3: %v %v", ok, err)
	}
	// Last handed out was .6, so the search wraps to .3 (c1's), then .5.
	if ip := mustAlloc(t, s, "n1", "eth0"); ip.String() != "10.9.0.3" {
		t.Fatalf("after wrap got %s, want 10.9.0.3", ip)
	}
	if ip := mustAlloc(t, s, "n2", "eth0"); ip.String() != "10.9.0.5" {
		t.Fatalf("next got %s, want 10.9.0.5", ip)
	}
}

func TestStoreRoundRobinDoesNotReuseImmediately(t *testing.T) {
	s := openStore(t, t.TempDir(), "10.9.0.0/24")
	a := mustAlloc(t, s, "a", "eth0")
	if _, err := s.Release("a", "eth0"); err != nil {
		t.Fatal(err)
	}
	b := mustAlloc(t, s, "b", "eth0")
	if a.Equal(b) {
		t.Fatalf("released %s was handed out again immediately", a)
	}
	if b.String() != "10.9.0.3" {
		t.Fatalf("got %s, want 10.9.0.3", b)
	}
	// The hint survives reopening the store (a new CNI process).
	s2 := openStore(t, s.Dir(), "10.9.0.0/24")
	if c := mustAlloc(t, s2, "c", "eth0"); c.String() != "10.9.0.4" {
		t.Fatalf("after reopen got %s, want 10.9.0.4", c)
	}
}

func TestStoreIdempotentAllocateAndGet(t *testing.T) {
	s := openStore(t, t.TempDir(), "10.9.0.0/24")
	a := mustAlloc(t, s, "c1", "eth0")
	mustAlloc(t, s, "c2", "eth0")
	if again := mustAlloc(t, s, "c1", "eth0"); !again.Equal(a) {
		t.Fatalf("second allocate for c1/eth0 gave %s, want %s", again, a)
	}
	other := mustAlloc(t, s, "c1", "net1")
	if other.Equal(a) {
		t.Fatal("a second interface of the same container shares its IP")
	}
	if ip, created, err := s.Reserve("c1", "eth0"); err != nil || created || !ip.Equal(a) {
		t.Fatalf("Reserve of a held attachment = %v %v %v, want %s false", ip, created, err, a)
	}
	if ip, created, err := s.Reserve("c3", "eth0"); err != nil || !created || ip.Equal(a) {
		t.Fatalf("Reserve of a new attachment = %v %v %v, want a new IP, true", ip, created, err)
	}
	ip, ok, err := s.Get("c1", "eth0")
	if err != nil || !ok || !ip.Equal(a) {
		t.Fatalf("Get c1/eth0 = %v %v %v, want %s", ip, ok, err, a)
	}
	if _, ok, _ := s.Get("nope", "eth0"); ok {
		t.Fatal("Get of an unknown attachment found something")
	}
	list, err := s.List()
	if err != nil || len(list) != 4 {
		t.Fatalf("List = %v %v, want 4 allocations", list, err)
	}
	for _, bad := range [][2]string{{"", "eth0"}, {"c", ""}, {"c\n", "eth0"}} {
		if _, err := s.Allocate(bad[0], bad[1]); err == nil {
			t.Errorf("Allocate(%q, %q): no error", bad[0], bad[1])
		}
	}
}

func TestStoreGCAndCrashRecovery(t *testing.T) {
	s := openStore(t, t.TempDir(), "10.9.0.0/24")
	keep := mustAlloc(t, s, "keep", "eth0")
	gone := mustAlloc(t, s, "gone", "eth0")
	// A crash right after the O_EXCL create, before the content was written:
	// an empty record. And one cut short mid-write.
	for name, content := range map[string]string{"10.9.0.50": "", "10.9.0.51": "half-written-id"} {
		if err := os.WriteFile(filepath.Join(s.Dir(), name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// A crashed ADD's complete record: the plugin died after writing it.
	crashed := mustAlloc(t, s, "crashed", "eth0")

	free, _ := s.Free()
	if free != 253-5 {
		t.Fatalf("free %d before GC, want %d", free, 253-5)
	}
	freed, err := s.GC([]Attachment{{"keep", "eth0"}, {"not-allocated", "eth0"}})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range freed {
		got = append(got, a.IP.String())
	}
	want := []string{gone.String(), crashed.String(), "10.9.0.50", "10.9.0.51"}
	if strings.Join(sorted(got), ",") != strings.Join(sorted(want), ",") {
		t.Fatalf("GC freed %v, want %v", got, want)
	}
	list, _ := s.List()
	if len(list) != 1 || !list[0].IP.Equal(keep) || list[0].ContainerID != "keep" {
		t.Fatalf("after GC: %v", list)
	}
	// Nothing that GC left can be handed out again.
	for i := 0; i < 252; i++ {
		ip := mustAlloc(t, s, fmt.Sprintf("f%d", i), "eth0")
		if ip.Equal(keep) {
			t.Fatalf("allocated the kept IP %s twice", keep)
		}
	}
}

func sorted(s []string) []string {
	out := append([]string(nil), s...)
	sort.Strings(out)
	return out
}

// TestStoreConcurrentGoroutines opens one Store per goroutine (separate open
// file descriptions, so the flock really arbitrates) plus one shared Store.
func TestStoreConcurrentGoroutines(t *testing.T) {
	dir := t.TempDir()
	shared := openStore(t, dir, "10.9.0.0/24")
	const workers, each = 10, 12
	var (
		mu   sync.Mutex
		seen = map[string]string{}
		wg   sync.WaitGroup
		errs = make(chan error, workers*each)
	)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			s := shared
			if w%2 == 0 {
				var err error
				if s, err = Open(dir, cidr(t, "10.9.0.0/24")); err != nil {
					errs <- err
					return
				}
				defer s.Close()
			}
			for i := 0; i < each; i++ {
				id := fmt.Sprintf("w%d-%d", w, i)
				ip, err := s.Allocate(id, "eth0")
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				if prev, dup := seen[ip.String()]; dup {
					errs <- fmt.Errorf("%s given to %s and %s", ip, prev, id)
				}
				seen[ip.String()] = id
				mu.Unlock()
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if len(seen) != workers*each {
		t.Fatalf("%d distinct IPs, want %d", len(seen), workers*each)
	}
	list, _ := shared.List()
	if len(list) != workers*each {
		t.Fatalf("%d records, want %d", len(list), workers*each)
	}
}

const helperEnv = "PODNET_IPAM_TEST_HELPER"

// TestStoreHelperProcess is not a test: TestStoreConcurrentProcesses runs the
// test binary with it to allocate from another OS process.
func TestStoreHelperProcess(t *testing.T) {
	spec := os.Getenv(helperEnv)
	if spec == "" {
		t.Skip("helper process only")
	}
	parts := strings.Split(spec, ",") // dir,subnet,prefix,count
	_, subnet, _ := net.ParseCIDR(parts[1])
	s, err := Open(parts[0], subnet)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var n int
	fmt.Sscan(parts[3], &n)
	for i := 0; i < n; i++ {
		ip, err := s.Allocate(fmt.Sprintf("%s-%d", parts[2], i), "eth0")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(3)
		}
		fmt.Printf("IP %s %s-%d\n", ip, parts[2], i)
	}
	os.Exit(0)
}

func TestStoreConcurrentProcesses(t *testing.T) {
	dir := t.TempDir()
	const procs, each = 6, 15
	var wg sync.WaitGroup
	outs := make([][]byte, procs)
	errs := make([]error, procs)
	for p := 0; p < procs; p++ {
		wg.Add(1)
		go func(p int) {
			defer wg.Done()
			cmd := exec.Command(os.Args[0], "-test.run=^TestStoreHelperProcess$")
			cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s,10.9.0.0/24,p%d,%d", helperEnv, dir, p, each))
			outs[p], errs[p] = cmd.Output()
		}(p)
	}
	wg.Wait()
	seen := map[string]string{}
	for p := 0; p < procs; p++ {
		if errs[p] != nil {
			t.Fatalf("helper %d: %v", p, errs[p])
		}
		for _, line := range strings.Split(string(outs[p]), "\n") {
			f := strings.Fields(line)
			if len(f) != 3 || f[0] != "IP" {
				continue
			}
			if prev, dup := seen[f[1]]; dup {
				t.Errorf("%s given to %s and %s", f[1], prev, f[2])
			}
			seen[f[1]] = f[2]
		}
	}
	if len(seen) != procs*each {
		t.Fatalf("%d distinct IPs from %d processes, want %d", len(seen), procs, procs*each)
	}
	s := openStore(t, dir, "10.9.0.0/24")
	list, _ := s.List()
	if len(list) != procs*each {
		t.Fatalf("%d records, want %d", len(list), procs*each)
	}
	for _, a := range list {
		if seen[a.IP.String()] != a.ContainerID {
			t.Errorf("record %s belongs to %q, helper reported %q", a.IP, a.ContainerID, seen[a.IP.String()])
		}
	}
}
