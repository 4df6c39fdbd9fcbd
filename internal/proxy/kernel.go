package proxy

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Kernel applies rulesets to the proxy's table in one network namespace. It remembers what it
// programmed, so a sync sends only the difference; the first sync (and the first after an error)
// reads the table back from the kernel instead, which is how a restarted agent adopts its
// predecessor's rules without flushing anything.
type Kernel struct {
	conn  *nftables.Conn
	table *nftables.Table
	cur   *programmed
	// AffinitySize bounds the ClientIP affinity map (entries the kernel may create).
	AffinitySize uint32
}

type programmed struct {
	chains map[string]chainState
	sets   map[string]*setState
}

type chainState struct {
	hook  *Hook
	rules []string // fingerprints
}

type setState struct {
	def      string
	elements map[string]Element
	owned    bool // elements is the Kernel's own map (not a Ruleset's)
}

// ApplyStats says what one Apply changed.
type ApplyStats struct {
	ElementsAdded, ElementsRemoved int
	ChainsAdded, ChainsRemoved     int
	ChainsRewritten                int
	Adopted                        bool // the table was read back from the kernel first
	Messages                       int
}

// Changed says whether Apply sent anything.
func (s ApplyStats) Changed() bool {
	return s.ElementsAdded+s.ElementsRemoved+s.ChainsAdded+s.ChainsRemoved+s.ChainsRewritten > 0
}

// NewKernel opens a lasting nftables connection into the namespace whose file descriptor is
// netnsFD (-1 for the caller's own namespace).
func NewKernel(netnsFD int) (*Kernel, error) {
	opts := []nftables.ConnOption{nftables.AsLasting(), nftables.WithSockOptions(BigBuffers)}
	if netnsFD >= 0 {
		opts = append(opts, nftables.WithNetNSFd(netnsFD))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return nil, err
	}
	return &Kernel{conn: c, table: &nftables.Table{Name: TableName, Family: nftables.TableFamilyIPv4}, AffinitySize: 1 << 18}, nil
}

// Close releases the netlink socket. The table stays.
func (k *Kernel) Close() error { return k.conn.CloseLasting() }

// BigBuffers (a socket option for nftables.New) lets one transaction carry tens of thousands
// of elements and their acks.
func BigBuffers(c *netlink.Conn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		for _, opt := range []int{unix.SO_SNDBUFFORCE, unix.SO_RCVBUFFORCE} {
			if e := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, opt, 64<<20); e != nil {
				serr = e
			}
		}
	})
	if err != nil {
		return err
	}
	return serr
}

// Fingerprint identifies a rule by its text and a hash of its bytecode; it is stored as the
// rule's comment, so that a restarted agent can tell whether the kernel has exactly its rules.
func Fingerprint(r Rule) string {
	h := sha256.Sum256([]byte(strings.Join(Bytecode(r.Exprs), "\n")))
	return r.Text + " #" + hex.EncodeToString(h[:6])
}

func setDef(s *Set) string {
	return fmt.Sprintf("%s:%s:%v", typeNames(s.Key), typeNames(s.Data), s.Dynamic)
}

// Load reads the table from the kernel unless Apply already knows what is programmed.
func (k *Kernel) Load() error {
	if k.cur != nil {
		return nil
	}
	cur, err := k.read()
	if err != nil {
		return err
	}
	if cur == nil {
		cur = &programmed{chains: map[string]chainState{}, sets: map[string]*setState{}}
	}
	k.cur = cur
	return nil
}

// Programmed returns the elements of a set as last programmed (or read); callers must not
// modify the map.
func (k *Kernel) Programmed(set string) map[string]Element {
	if k.cur == nil || k.cur.sets[set] == nil {
		return nil
	}
	return k.cur.sets[set].elements
}

// Forget drops what Apply remembers, so the next Apply reads the kernel again.
func (k *Kernel) Forget() { k.cur = nil }

// Delete removes the proxy's table.
func (k *Kernel) Delete() error {
	k.cur = nil
	tables, err := k.conn.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return err
	}
	for _, t := range tables {
		if t.Name == TableName {
			k.conn.DelTable(k.table)
			return k.conn.Flush()
		}
	}
	return nil
}

// read loads the table as the kernel has it.
func (k *Kernel) read() (*programmed, error) {
	p := &programmed{chains: map[string]chainState{}, sets: map[string]*setState{}}
	tables, err := k.conn.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	found := false
	for _, t := range tables {
		found = found || t.Name == TableName
	}
	if !found {
		return nil, nil
	}
	chains, err := k.conn.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return nil, fmt.Errorf("list chains: %w", err)
	}
	for _, c := range chains {
		if c.Table.Name != TableName {
			continue
		}
		rules, err := k.conn.GetRules(k.table, c)
		if err != nil {
			return nil, fmt.Errorf("list rules of %s: %w", c.Name, err)
		}
		cs := chainState{}
		if c.Hooknum != nil && c.Priority != nil {
			cs.hook = &Hook{Type: c.Type, Hooknum: *c.Hooknum, Priority: int32(*c.Priority)}
		}
		for _, r := range rules {
			fp, _ := userdata.GetString(r.UserData, userdata.TypeComment)
			cs.rules = append(cs.rules, fp)
		}
		p.chains[c.Name] = cs
	}
	sets, err := k.conn.GetSets(k.table)
	if err != nil {
		return nil, fmt.Errorf("list sets: %w", err)
	}
	for _, s := range sets {
		ss := &setState{def: "?", elements: map[string]Element{}, owned: true}
		if d, ok := setDefs[s.Name]; ok && kernelSetMatches(s, d) {
			ss.def = setDef(d)
		}
		p.sets[s.Name] = ss
		if s.Dynamic {
			continue // the kernel owns a dynamic set's elements
		}
		elems, err := k.conn.GetSetElements(s)
		if err != nil {
			return nil, fmt.Errorf("list elements of %s: %w", s.Name, err)
		}
		for _, e := range elems {
			el := Element{Key: e.Key}
			if d := setDefs[s.Name]; d != nil && d.IsVerdictMap() {
				v, err := decodeVerdict(e.Val)
				if err != nil {
					return nil, fmt.Errorf("element of %s: %w", s.Name, err)
				}
				if v.Kind == expr.VerdictGoto || v.Kind == expr.VerdictJump {
					el.Chain = v.Chain
				} else {
					el.Verdict = v.Kind
				}
			} else if len(e.Val) > 0 {
				el.Data = e.Val
			}
			ss.elements[string(el.Key)] = el
		}
	}
	return p, nil
}

// setDefs are the sets Render makes, by name, to recognise them when reading the kernel.
var setDefs = func() map[string]*Set {
	m := map[string]*Set{}
	for _, s := range Render(Snapshot{}, Options{}).Sets {
		m[s.Name] = s
	}
	return m
}()

func kernelSetMatches(ks *nftables.Set, d *Set) bool {
	want := nftSet(d, nil, 0)
	if d.IsVerdictMap() {
		// google/nftables reads a verdict map's key type back as "verdict"; the map flag and
		// the name are what can be checked.
		return ks.IsMap && !ks.Dynamic
	}
	return ks.KeyType.Bytes == want.KeyType.Bytes && ks.KeyType.GetNFTMagic() == want.KeyType.GetNFTMagic() &&
		ks.IsMap == want.IsMap && ks.Dynamic == want.Dynamic &&
		(!ks.IsMap || ks.DataType.GetNFTMagic() == want.DataType.GetNFTMagic() || want.DataType.Name == nftables.TypeVerdict.Name)
}

// decodeVerdict reads a verdict map element's value (nested NFTA_VERDICT_* attributes), which
// google/nftables hands back undecoded.
func decodeVerdict(b []byte) (expr.Verdict, error) {
	var v expr.Verdict
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return v, err
	}
	ad.ByteOrder = binary.BigEndian
	for ad.Next() {
		switch ad.Type() {
		case unix.NFTA_VERDICT_CODE:
			v.Kind = expr.VerdictKind(int32(ad.Uint32()))
		case unix.NFTA_VERDICT_CHAIN:
			v.Chain = ad.String()
		}
	}
	return v, ad.Err()
}

func nftSet(s *Set, t *nftables.Table, size uint32) *nftables.Set {
	ns := &nftables.Set{Table: t, Name: s.Name, KeyType: nftables.MustConcatSetType(s.Key...),
		Concatenation: len(s.Key) > 1}
	if len(s.Key) == 1 {
		ns.KeyType = s.Key[0]
	}
	if len(s.Data) > 0 {
		ns.IsMap = true
		if s.IsVerdictMap() {
			ns.DataType = nftables.TypeVerdict
		} else {
			ns.DataType = nftables.MustConcatSetType(s.Data...)
			if len(s.Data) == 1 {
				ns.DataType = s.Data[0]
			}
		}
	}
	if s.Dynamic {
		ns.Dynamic, ns.HasTimeout, ns.Size = true, true, size
	}
	return ns
}

func nftElement(s *Set, e Element) nftables.SetElement {
	el := nftables.SetElement{Key: e.Key}
	switch {
	case e.Chain != "":
		el.VerdictData = &expr.Verdict{Kind: expr.VerdictGoto, Chain: e.Chain}
	case s.IsVerdictMap():
		el.VerdictData = &expr.Verdict{Kind: e.Verdict}
	case len(s.Data) > 0:
		el.Val = e.Data
	}
	return el
}

var addSetMu sync.Mutex

const chunk = 1000 // elements per netlink message (an attribute is at most 64 KiB)

// queueElements adds element additions or deletions to the pending transaction, in messages
// small enough for netlink.
func (k *Kernel) queueElements(s *nftables.Set, els []nftables.SetElement, del bool) error {
	return QueueElements(k.conn, s, els, del, chunk)
}

// QueueElements adds element additions (or deletions) to c's pending transaction, per elements
// to a netlink message: a message's element list is one attribute, at most 64 KiB.
func QueueElements(c *nftables.Conn, s *nftables.Set, els []nftables.SetElement, del bool, per int) error {
	for i := 0; i < len(els); i += per {
		part := els[i:min(i+per, len(els))]
		var err error
		if del {
			err = c.SetDeleteElements(s, part)
		} else {
			err = c.SetAddElements(s, part)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// Apply makes the table match rs in one transaction and remembers the result.
func (k *Kernel) Apply(rs *Ruleset) (ApplyStats, error) {
	var st ApplyStats
	if k.cur == nil {
		cur, err := k.read()
		if err != nil {
			return st, err
		}
		st.Adopted = cur != nil
		k.cur = cur
	}
	cur := k.cur
	if cur != nil {
		// A base chain whose hook changed, or a set whose type changed (an upgrade), cannot be
		// edited in place while rules use it: rebuild the table in the same transaction.
		rebuild := false
		for _, c := range rs.Chains {
			if old, ok := cur.chains[c.Name]; ok && !sameHook(old.hook, c.Hook) {
				rebuild = true
			}
		}
		for _, s := range rs.Sets {
			if old, ok := cur.sets[s.Name]; ok && old.def != setDef(s) {
				rebuild = true
			}
		}
		if rebuild {
			k.conn.DelTable(k.table)
			cur = nil
		}
	}
	if cur == nil {
		cur = &programmed{chains: map[string]chainState{}, sets: map[string]*setState{}}
	}
	c := k.conn
	c.AddTable(k.table)
	next := &programmed{chains: map[string]chainState{}, sets: map[string]*setState{}}
	chainRef := map[string]*nftables.Chain{}

	// 1. chains that do not exist yet (empty; rules come after the sets they use)
	for _, ch := range rs.Chains {
		nc := ch.NFT(k.table)
		chainRef[ch.Name] = nc
		if _, ok := cur.chains[ch.Name]; !ok {
			c.AddChain(nc)
			st.ChainsAdded++
		}
	}
	// 2. sets, and element changes
	for _, s := range rs.Sets {
		ns := nftSet(s, k.table, k.AffinitySize)
		old, ok := cur.sets[s.Name]
		next.sets[s.Name] = &setState{def: setDef(s), elements: s.Elements}
		if !ok {
			// google/nftables allocates set IDs from an unguarded package counter: agents of
			// one process must not add sets concurrently.
			addSetMu.Lock()
			err := c.AddSet(ns, nil)
			addSetMu.Unlock()
			if err != nil {
				return st, err
			}
			old = &setState{elements: map[string]Element{}}
		}
		if s.Dynamic {
			continue
		}
		var del, add []nftables.SetElement
		for key, e := range old.elements {
			if ne, ok := s.Elements[key]; !ok || !ne.same(e) {
				del = append(del, nftElement(s, e))
			}
		}
		for key, e := range s.Elements {
			if oe, ok := old.elements[key]; !ok || !oe.same(e) {
				add = append(add, nftElement(s, e))
			}
		}
		sortElems(del)
		sortElems(add)
		st.ElementsRemoved += len(del)
		st.ElementsAdded += len(add)
		if err := k.queueElements(ns, del, true); err != nil {
			return st, err
		}
		if err := k.queueElements(ns, add, false); err != nil {
			return st, err
		}
	}
	// 3. rules of chains that are new or differ
	for _, ch := range rs.Chains {
		var fps []string
		for _, r := range ch.Rules {
			fps = append(fps, Fingerprint(r))
		}
		next.chains[ch.Name] = chainState{hook: ch.Hook, rules: fps}
		old, ok := cur.chains[ch.Name]
		if ok && equalStrings(old.rules, fps) {
			continue
		}
		if ok {
			c.FlushChain(chainRef[ch.Name])
			st.ChainsRewritten++
		}
		for i, r := range ch.Rules {
			c.AddRule(&nftables.Rule{Table: k.table, Chain: chainRef[ch.Name], Exprs: r.Exprs,
				UserData: userdata.AppendString(nil, userdata.TypeComment, fps[i])})
		}
	}
	// 4. chains and sets no longer wanted (their references went away above)
	var gone []string
	for name := range cur.chains {
		if rs.Chain(name) == nil {
			gone = append(gone, name)
		}
	}
	sort.Strings(gone)
	for _, name := range gone {
		nc := &nftables.Chain{Name: name, Table: k.table}
		c.FlushChain(nc)
		c.DelChain(nc)
		st.ChainsRemoved++
	}
	for name := range cur.sets {
		if rs.Set(name) == nil {
			c.DelSet(&nftables.Set{Table: k.table, Name: name})
		}
	}
	start := time.Now()
	if err := c.Flush(); err != nil {
		k.cur = nil
		return st, fmt.Errorf("nftables transaction (%s): %w", time.Since(start).Round(time.Millisecond), err)
	}
	k.cur = next
	return st, nil
}

func sameHook(a, b *Hook) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return a.Type == b.Type && a.Hooknum == b.Hooknum && a.Priority == b.Priority
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func sortElems(es []nftables.SetElement) {
	sort.Slice(es, func(i, j int) bool { return string(es[i].Key) < string(es[j].Key) })
}

// NFT is the chain as google/nftables describes it in table t (base chains accept by policy).
func (c *Chain) NFT(t *nftables.Table) *nftables.Chain {
	nc := &nftables.Chain{Name: c.Name, Table: t}
	if c.Hook != nil {
		accept := nftables.ChainPolicyAccept
		nc.Type = c.Hook.Type
		nc.Hooknum = nftables.ChainHookRef(c.Hook.Hooknum)
		nc.Priority = nftables.ChainPriorityRef(nftables.ChainPriority(c.Hook.Priority))
		nc.Policy = &accept
	}
	return nc
}

// AffinityEntry is one remembered ClientIP-affinity choice.
type AffinityEntry struct {
	Key     []byte
	Data    []byte
	Expires time.Duration
}

// AffinityEntries lists the kernel's remembered ClientIP-affinity choices.
func (k *Kernel) AffinityEntries() ([]AffinityEntry, error) {
	s := setDefs[SetAffinity]
	els, err := k.conn.GetSetElements(nftSet(s, k.table, k.AffinitySize))
	if err != nil {
		return nil, err
	}
	var out []AffinityEntry
	for _, e := range els {
		out = append(out, AffinityEntry{Key: e.Key, Data: e.Val, Expires: e.Expires})
	}
	return out, nil
}

// ForgetAffinity deletes remembered choices (for endpoints that are gone).
func (k *Kernel) ForgetAffinity(entries []AffinityEntry) error {
	if len(entries) == 0 {
		return nil
	}
	s := nftSet(setDefs[SetAffinity], k.table, k.AffinitySize)
	var els []nftables.SetElement
	for _, e := range entries {
		els = append(els, nftables.SetElement{Key: e.Key})
	}
	if err := k.queueElements(s, els, true); err != nil {
		return err
	}
	if err := k.conn.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
		return err
	}
	return nil
}
