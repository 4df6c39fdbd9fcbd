package main

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/google/nftables"

	"github.com/podnet/podnet/internal/policy"
	"github.com/podnet/podnet/internal/proxy"

	"github.com/podnet/podnet/bench/internal/benchenv"
)

// Installing a node's whole table is a new policy.Kernel's first Apply. Every install is checked
// by reading the table back from the kernel and counting its elements: an Apply that reports
// success but leaves the kernel with less than the rendered table (as a too-long netlink
// attribute once did) would make every figure after it meaningless, so the run stops instead.

// install puts rs into the namespace netnsFD with a new policy.Kernel (first Apply, timed) and
// checks the kernel's table.
func install(netnsFD int, rs *policy.Ruleset) (*policy.Kernel, time.Duration, error) {
	k, err := policy.NewKernel(netnsFD)
	if err != nil {
		return nil, 0, err
	}
	t0 := time.Now()
	_, err = k.Apply(rs)
	d := time.Since(t0)
	if err != nil {
		k.Close()
		n, _ := elements(rs)
		return nil, 0, fmt.Errorf("policy.Kernel.Apply of the whole table (%d elements, largest set %d): %w", n, maxSet(rs), err)
	}
	if diff, err := verify(netnsFD, rs); err != nil || diff != "" {
		k.Close()
		if err == nil {
			err = fmt.Errorf("policy.Kernel.Apply reported success, but the %s", diff)
		}
		return nil, 0, err
	}
	return k, d, nil
}

func maxSet(rs *policy.Ruleset) int {
	m := 0
	for _, s := range rs.Sets {
		m = max(m, len(s.Elements))
	}
	return m
}

func nftConn(netnsFD int) (*nftables.Conn, error) {
	return nftables.New(nftables.AsLasting(), nftables.WithNetNSFd(netnsFD), nftables.WithSockOptions(proxy.BigBuffers))
}

var policyTable = &nftables.Table{Name: policy.TableName, Family: nftables.TableFamilyIPv4}

// countKernel reads the policy table's sets back and counts their elements (0 without a table).
func countKernel(netnsFD int) (int, map[string]int, error) {
	c, err := nftConn(netnsFD)
	if err != nil {
		return 0, nil, err
	}
	defer c.CloseLasting()
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return 0, nil, err
	}
	found := false
	for _, t := range tables {
		found = found || t.Name == policy.TableName
	}
	if !found {
		return 0, nil, nil
	}
	sets, err := c.GetSets(policyTable)
	if err != nil {
		return 0, nil, err
	}
	total, per := 0, map[string]int{}
	for _, s := range sets {
		els, err := c.GetSetElements(s)
		if err != nil {
			return 0, nil, fmt.Errorf("read set %s: %w", s.Name, err)
		}
		for _, e := range els {
			if !e.IntervalEnd {
				per[s.Name]++
				total++
			}
		}
	}
	return total, per, nil
}

// verify compares the kernel's table with rs by element counts per set, and describes a
// difference ("" when they agree).
func verify(netnsFD int, rs *policy.Ruleset) (string, error) {
	got, per, err := countKernel(netnsFD)
	if err != nil {
		return "", err
	}
	want, _ := elements(rs)
	var parts []string
	for _, s := range rs.Sets {
		if per[s.Name] != len(s.Elements) {
			parts = append(parts, fmt.Sprintf("%s %d/%d", s.Name, per[s.Name], len(s.Elements)))
		}
	}
	if len(parts) == 0 {
		return "", nil
	}
	return fmt.Sprintf("kernel holds %d of the %d rendered elements (%s)", got, want, strings.Join(parts, ", ")), nil
}

// rawCommit times the kernel alone: one transaction adding one element to an allow set, and one
// deleting it again, sent straight over netlink (no Render, no diff). The element's local-pod
// field is an address outside every pod CIDR, so it overlaps nothing. Median of reps.
func rawCommit(netnsFD int, set string, reps int) (add, del time.Duration, err error) {
	c, err := nftConn(netnsFD)
	if err != nil {
		return 0, 0, err
	}
	defer c.CloseLasting()
	s := policy.EmptyRuleset(nil).Set(set)
	ns := &nftables.Set{Table: policyTable, Name: set, KeyType: nftables.MustConcatSetType(s.Key...), Concatenation: true, Interval: true}
	outside := netip.MustParseAddr("203.0.113.7").As4()
	key := make([]byte, 16)
	copy(key[0:4], outside[:]) // the egress set's local pod is the source,
	copy(key[4:8], outside[:]) // the ingress set's the destination
	key[8] = 6
	binary.BigEndian.PutUint16(key[12:], 1)
	el := []nftables.SetElement{{Key: key, KeyEnd: key}}
	var adds, dels []time.Duration
	for r := 0; r < reps; r++ {
		t0 := time.Now()
		if err := c.SetAddElements(ns, el); err != nil {
			return 0, 0, err
		}
		if err := c.Flush(); err != nil {
			return 0, 0, fmt.Errorf("add to %s: %w", set, err)
		}
		t1 := time.Now()
		if err := c.SetDeleteElements(ns, el); err != nil {
			return 0, 0, err
		}
		if err := c.Flush(); err != nil {
			return 0, 0, fmt.Errorf("delete from %s: %w", set, err)
		}
		adds, dels = append(adds, t1.Sub(t0)), append(dels, time.Since(t1))
	}
	return benchenv.MedianDur(adds), benchenv.MedianDur(dels), nil
}
