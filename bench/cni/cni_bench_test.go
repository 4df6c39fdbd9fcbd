package cni

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"

	podcni "github.com/podnet/podnet/internal/cni"
)

// minIterations is the least number of ADD+DEL rounds per plugin.
const minIterations = 100

// buildPlugin builds podnet-cni into a directory removed after b.
func buildPlugin(b *testing.B) string {
	b.Helper()
	dir := b.TempDir()
	out, err := exec.Command("go", "build", "-o", filepath.Join(dir, "podnet-cni"), "github.com/podnet/podnet/cmd/podnet-cni").CombinedOutput()
	if err != nil {
		b.Fatalf("build podnet-cni: %v\n%s", err, out)
	}
	return dir
}

func randHex(n int) string {
	buf := make([]byte, n)
	if _, err := rand.Read(buf); err != nil {
		panic(err)
	}
	return hex.EncodeToString(buf)
}

func newNetns(b *testing.B, role string) string {
	b.Helper()
	name := "pntest-bench-" + role + "-" + randHex(4)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		b.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	b.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			b.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	return name
}

// subject is one plugin chain set up on its own fresh node.
type subject struct {
	name string
	cni  *libcni.CNIConfig
	list *libcni.NetworkConfigList
	pods []string
	add  []time.Duration
	del  []time.Duration
}

func newSubject(b *testing.B, name, binDir, conflist string) *subject {
	b.Helper()
	node := newNetns(b, name)
	tmp := b.TempDir()
	l, err := libcni.ConfListFromBytes([]byte(fmt.Sprintf(conflist, filepath.Join(tmp, "ipam"))))
	if err != nil {
		b.Fatal(err)
	}
	s := &subject{
		name: name,
		cni:  libcni.NewCNIConfigWithCacheDir([]string{binDir, "/usr/lib/cni"}, filepath.Join(tmp, "cache"), podcni.NodeExec{NetNS: node}),
		list: l,
	}
	for i := 0; i < 2; i++ {
		s.pods = append(s.pods, newNetns(b, name+"-pod"))
	}
	return s
}

// round runs one ADD and one DEL of a new container and records both.
func (s *subject) round(b *testing.B, i int) {
	rt := &libcni.RuntimeConf{
		ContainerID: fmt.Sprintf("bench-%s-%d-%s", s.name, i, randHex(4)),
		NetNS:       "/var/run/netns/" + s.pods[i%len(s.pods)],
		IfName:      "eth0",
	}
	ctx := context.Background()
	start := time.Now()
	if _, err := s.cni.AddNetworkList(ctx, s.list, rt); err != nil {
		b.Fatalf("%s ADD: %v", s.name, err)
	}
	mid := time.Now()
	if err := s.cni.DelNetworkList(ctx, s.list, rt); err != nil {
		b.Fatalf("%s DEL: %v", s.name, err)
	}
	s.add = append(s.add, mid.Sub(start))
	s.del = append(s.del, time.Since(mid))
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

const podnetConflist = `{"cniVersion":"1.0.0","name":"bench","plugins":[
 {"type":"podnet-cni","podCIDR":"10.252.0.0/24","dataDir":%q,"mtu":1400}]}`

const referenceConflist = `{"cniVersion":"1.0.0","name":"bench","plugins":[
 {"type":"bridge","bridge":"podnet0","isGateway":true,"hairpinMode":true,"mtu":1400,
  "ipam":{"type":"host-local","ranges":[[{"subnet":"10.252.0.0/24"}]],"dataDir":%q}}]}`

// BenchmarkAddDel measures CNI ADD and DEL latency of podnet-cni and of the
// reference bridge + host-local plugins in the same run, interleaved, at
// least 100 rounds each, and reports medians and podnet/reference ratios.
func BenchmarkAddDel(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root (network namespaces)")
	}
	for _, p := range []string{"/usr/lib/cni/bridge", "/usr/lib/cni/host-local"} {
		if _, err := os.Stat(p); err != nil {
			b.Fatalf("reference plugin missing (apt-get install containernetworking-plugins): %v", err)
		}
	}
	bin := buildPlugin(b)
	podnet := newSubject(b, "podnet", bin, podnetConflist)
	ref := newSubject(b, "ref", bin, referenceConflist)
	// Warm up both (bridge and nft table creation, page cache).
	podnet.round(b, 0)
	ref.round(b, 0)
	podnet.add, podnet.del, ref.add, ref.del = nil, nil, nil, nil

	n := max(b.N, minIterations)
	b.ResetTimer()
	for i := 0; i < n; i++ {
		podnet.round(b, i)
		ref.round(b, i)
	}
	b.StopTimer()

	r := summarize(podnet, ref)
	b.ReportMetric(r.podnetAdd, "podnet-add-ms")
	b.ReportMetric(r.refAdd, "ref-add-ms")
	b.ReportMetric(r.podnetDel, "podnet-del-ms")
	b.ReportMetric(r.refDel, "ref-del-ms")
	b.ReportMetric(r.addRatio, "add-ratio")
	b.ReportMetric(r.delRatio, "del-ratio")
	printTable(r, n)
}

type summary struct {
	podnetAdd, refAdd, podnetDel, refDel float64
	addRatio, delRatio                   float64
}

func summarize(podnet, ref *subject) summary {
	s := summary{
		podnetAdd: ms(median(podnet.add)),
		refAdd:    ms(median(ref.add)),
		podnetDel: ms(median(podnet.del)),
		refDel:    ms(median(ref.del)),
	}
	if s.refAdd > 0 {
		s.addRatio = s.podnetAdd / s.refAdd
	}
	if s.refDel > 0 {
		s.delRatio = s.podnetDel / s.refDel
	}
	return s
}

// printTable prints the result as a header and one line when the benchmark
// runs with -v.
func printTable(s summary, n int) {
	if !testing.Verbose() {
		return
	}
	fmt.Printf("%-8s %-14s %-14s %-10s %-14s %-14s %-10s\n", "rounds", "podnet ADD ms", "ref ADD ms", "ADD ratio", "podnet DEL ms", "ref DEL ms", "DEL ratio")
	fmt.Printf("%-8d %-14.2f %-14.2f %-10.2f %-14.2f %-14.2f %-10.2f\n", n, s.podnetAdd, s.refAdd, s.addRatio, s.podnetDel, s.refDel, s.delRatio)
}
