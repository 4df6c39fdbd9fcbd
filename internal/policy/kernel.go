package policy

import (
	"fmt"
	"sort"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/userdata"

	"github.com/podnet/podnet/internal/proxy"
)

// Kernel programs the policy table in one network namespace. The first Apply reads the table
// back from the kernel: when its chains are exactly the rendered ones (each rule carries its
// fingerprint as a comment), it adopts them and sends only element changes, so a restarted agent
// rewrites nothing that is right. Otherwise it builds the whole table in one transaction that
// also deletes the previous one, so there is never a moment without rules. Later Applies send
// only element changes (or rebuild, again atomically, when the chains change).
type Kernel struct {
	conn  *nftables.Conn
	table *nftables.Table
	cur   map[string]map[string]Element // set → string(Key)+string(KeyEnd) → element
	text  string                        // the chains as last built, to notice a change
}

// NewKernel opens a lasting nftables connection into the namespace of netnsFD (-1: our own).
func NewKernel(netnsFD int) (*Kernel, error) {
	opts := []nftables.ConnOption{nftables.AsLasting(), nftables.WithSockOptions(proxy.BigBuffers)}
	if netnsFD >= 0 {
		opts = append(opts, nftables.WithNetNSFd(netnsFD))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return nil, err
	}
	return &Kernel{conn: c, table: &nftables.Table{Name: TableName, Family: nftables.TableFamilyIPv4}}, nil
}

// Close releases the netlink socket; the table stays.
func (k *Kernel) Close() error { return k.conn.CloseLasting() }

// perMessage is how many elements go in one netlink message: an allow-set element (key and
// key end, 16 bytes each, with their attribute headers) takes under 100 bytes, and a message's
// element list is one attribute of at most 64 KiB.
const perMessage = 500

func elemID(e Element) string { return string(e.Key) + "/" + string(e.KeyEnd) }

func nftSet(s *Set, t *nftables.Table) *nftables.Set {
	ns := &nftables.Set{Table: t, Name: s.Name, KeyType: s.Key[0]}
	if len(s.Key) > 1 {
		ns.KeyType = nftables.MustConcatSetType(s.Key...)
		ns.Concatenation = true
	}
	ns.Interval = s.Interval
	return ns
}

func nftElems(s *Set, els []Element) []nftables.SetElement {
	out := make([]nftables.SetElement, 0, len(els))
	for _, e := range els {
		if s.Interval {
			out = append(out, nftables.SetElement{Key: e.Key, KeyEnd: e.KeyEnd})
		} else {
			out = append(out, nftables.SetElement{Key: e.Key})
		}
	}
	return out
}

func chainsText(rs *Ruleset) string {
	var b strings.Builder
	for _, c := range rs.Chains {
		b.WriteString(c.Text(true))
	}
	return b.String()
}

// Apply makes the table match rs in one transaction and returns how many elements changed.
func (k *Kernel) Apply(rs *Ruleset) (int, error) {
	if k.cur == nil {
		if cur, err := k.read(rs); err == nil && cur != nil {
			k.cur, k.text = cur, chainsText(rs)
		}
	}
	if k.cur == nil || k.text != chainsText(rs) {
		return k.rebuild(rs)
	}
	if k.rebuildCheaper(rs) {
		return k.rebuild(rs)
	}
	c := k.conn
	changed := 0
	next := map[string]map[string]Element{}
	for _, s := range rs.Sets {
		want := map[string]Element{}
		for _, e := range s.Elements {
			want[elemID(e)] = e
		}
		next[s.Name] = want
		var del, add []Element
		for id, e := range k.cur[s.Name] {
			if _, ok := want[id]; !ok {
				del = append(del, e)
			}
		}
		for id, e := range want {
			if _, ok := k.cur[s.Name][id]; !ok {
				add = append(add, e)
			}
		}
		sortElems(del)
		sortElems(add)
		ns := nftSet(s, k.table)
		if err := proxy.QueueElements(c, ns, nftElems(s, del), true, perMessage); err != nil {
			return 0, err
		}
		if err := proxy.QueueElements(c, ns, nftElems(s, add), false, perMessage); err != nil {
			return 0, err
		}
		changed += len(del) + len(add)
	}
	if changed == 0 {
		return 0, nil
	}
	if err := c.Flush(); err != nil {
		k.cur = nil
		return 0, fmt.Errorf("nftables transaction: %w", err)
	}
	k.cur = next
	return changed, nil
}

// rebuildCheaper says whether replacing the whole table costs less than deleting elements one
// by one. The kernel's set type for concatenated ranges (pipapo) deletes an element in time
// that grows with the set (measured on 6.18: about 15 ms each in a set of 10,000, where adding is
// some 25 µs), while building a table costs about 12 µs per element however many there are. A
// rebuild is one transaction too: no packet ever sees a table without rules.
func (k *Kernel) rebuildCheaper(rs *Ruleset) bool {
	total, cost := 0, 0
	for _, s := range rs.Sets {
		total += len(s.Elements)
		if !s.Interval {
			continue
		}
		dels := 0
		for id, e := range k.cur[s.Name] {
			if w, ok := s.Elements[string(e.Key)]; !ok || elemID(w) != id {
				dels++
			}
		}
		cost += dels * len(k.cur[s.Name])
	}
	return cost > 8*total
}

func sortElems(es []Element) {
	sort.Slice(es, func(i, j int) bool { return elemID(es[i]) < elemID(es[j]) })
}

// rebuild replaces the whole table in one transaction.
func (k *Kernel) rebuild(rs *Ruleset) (int, error) {
	c := k.conn
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return 0, err
	}
	for _, t := range tables {
		if t.Name == TableName {
			c.DelTable(k.table)
		}
	}
	c.AddTable(k.table)
	chains := map[string]*nftables.Chain{}
	for _, ch := range rs.Chains {
		chains[ch.Name] = c.AddChain(ch.NFT(k.table))
	}
	next := map[string]map[string]Element{}
	n := 0
	for _, s := range rs.Sets {
		els := s.SortedElements()
		ns := nftSet(s, k.table)
		if err := c.AddSet(ns, nil); err != nil {
			return 0, err
		}
		if err := proxy.QueueElements(c, ns, nftElems(s, els), false, perMessage); err != nil {
			return 0, err
		}
		m := map[string]Element{}
		for _, e := range els {
			m[elemID(e)] = e
		}
		next[s.Name] = m
		n += len(els)
	}
	for _, ch := range rs.Chains {
		for _, r := range ch.Rules {
			c.AddRule(&nftables.Rule{Table: k.table, Chain: chains[ch.Name], Exprs: r.Exprs,
				UserData: userdata.AppendString(nil, userdata.TypeComment, proxy.Fingerprint(r))})
		}
	}
	if err := c.Flush(); err != nil {
		k.cur = nil
		return 0, fmt.Errorf("nftables transaction: %w", err)
	}
	k.cur, k.text = next, chainsText(rs)
	return n, nil
}

// read returns the elements of the table in the kernel if its chains and sets are exactly the
// ones rs has (same names, hooks, rule fingerprints and set types), and nil if there is no such
// table or anything differs.
func (k *Kernel) read(rs *Ruleset) (map[string]map[string]Element, error) {
	c := k.conn
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return nil, err
	}
	found := false
	for _, t := range tables {
		found = found || t.Name == TableName
	}
	if !found {
		return nil, nil
	}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return nil, err
	}
	n := 0
	for _, kc := range chains {
		if kc.Table.Name != TableName {
			continue
		}
		n++
		want := rs.Chain(kc.Name)
		if want == nil || (want.Hook == nil) != (kc.Hooknum == nil) {
			return nil, nil
		}
		if h := want.Hook; h != nil && (kc.Priority == nil || *kc.Hooknum != h.Hooknum || int32(*kc.Priority) != h.Priority || kc.Type != h.Type) {
			return nil, nil
		}
		rules, err := c.GetRules(k.table, kc)
		if err != nil {
			return nil, err
		}
		if len(rules) != len(want.Rules) {
			return nil, nil
		}
		for i, r := range rules {
			if fp, _ := userdata.GetString(r.UserData, userdata.TypeComment); fp != proxy.Fingerprint(want.Rules[i]) {
				return nil, nil
			}
		}
	}
	if n != len(rs.Chains) {
		return nil, nil
	}
	sets, err := c.GetSets(k.table)
	if err != nil || len(sets) != len(rs.Sets) {
		return nil, err
	}
	cur := map[string]map[string]Element{}
	for _, ks := range sets {
		want := rs.Set(ks.Name)
		if want == nil {
			return nil, nil
		}
		ws := nftSet(want, k.table)
		if ks.KeyType.Bytes != ws.KeyType.Bytes || ks.Interval != ws.Interval || ks.Concatenation != ws.Concatenation || ks.IsMap {
			return nil, nil
		}
		els, err := c.GetSetElements(ks)
		if err != nil {
			return nil, err
		}
		m := map[string]Element{}
		for _, e := range els {
			if e.IntervalEnd {
				continue
			}
			el := Element{Key: e.Key}
			if want.Interval {
				el.KeyEnd = e.KeyEnd
			}
			m[elemID(el)] = el
		}
		cur[ks.Name] = m
	}
	return cur, nil
}
