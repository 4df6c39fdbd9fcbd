package dns

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// SchemaVersion is the Kubernetes DNS schema this server implements (the dns-version TXT record).
const SchemaVersion = "1.1.0"

// Defaults.
const (
	DefaultDomain = "cluster.local"
	DefaultTTL    = 30
	versionTTL    = 28800
	soaRefresh    = 7200
	soaRetry      = 1800
	soaExpire     = 86400
)

// PodMode says how <ip-dashed>.<ns>.pod.<zone> names are answered.
type PodMode int

const (
	// PodModeInsecure answers any address in an existing namespace (CoreDNS "pods insecure").
	PodModeInsecure PodMode = iota
	// PodModeVerified answers only addresses a pod in that namespace has (CoreDNS "pods verified").
	PodModeVerified
	// PodModeDisabled has no pod subtree at all (CoreDNS "pods disabled").
	PodModeDisabled
)

func (m PodMode) String() string {
	switch m {
	case PodModeInsecure:
		return "insecure"
	case PodModeVerified:
		return "verified"
	case PodModeDisabled:
		return "disabled"
	}
	return fmt.Sprintf("PodMode(%d)", int(m))
}

// ParsePodMode parses insecure, verified or disabled.
func ParsePodMode(s string) (PodMode, error) {
	switch strings.ToLower(s) {
	case "insecure", "":
		return PodModeInsecure, nil
	case "verified":
		return PodModeVerified, nil
	case "disabled":
		return PodModeDisabled, nil
	}
	return 0, fmt.Errorf("pod mode %q: want insecure, verified or disabled", s)
}

// Config configures an Index.
type Config struct {
	// Domain is the cluster domain (default cluster.local).
	Domain string
	// TTL of cluster records and of negative answers (the SOA MINIMUM), in seconds; default 30.
	TTL uint32
	// PodMode says how pod records are answered (default PodModeInsecure).
	PodMode PodMode
	// NameserverAddrs are the A/AAAA records of ns.dns.<domain>, the zone's NS target (typically
	// the DNS Service's ClusterIPs). Without them the name exists with no addresses.
	NameserverAddrs []netip.Addr
	// Now is the clock for the SOA serial (default time.Now).
	Now func() time.Time
}

// Index holds every name of the cluster zone. Updates are serialised; readers use lock-free
// snapshots.
type Index struct {
	zone    string // lowercased FQDN, e.g. "cluster.local."
	ttl     uint32
	podMode PodMode
	nsAddrs []netip.Addr
	now     func() time.Time

	mu      sync.Mutex
	owners  map[string]recordSet // owner key -> the names and records it contributes
	entries map[string]*entry    // name -> contributions
	serial  uint32
	ready   bool

	snap atomic.Pointer[snapshot]
}

// contrib is one owner's records at one name; extra is the Additional section for them (SRV
// targets' addresses).
type contrib struct {
	rrs   []dns.RR
	extra []dns.RR
}

// recordSet is what one owner contributes: name -> records. A name with no records is an empty
// non-terminal the owner asserts exists.
type recordSet map[string]contrib

func (r recordSet) add(name string, rrs ...dns.RR) {
	c := r[name]
	c.rrs = append(c.rrs, rrs...)
	r[name] = c
}

func (r recordSet) addExtra(name string, rrs ...dns.RR) {
	c := r[name]
	c.extra = append(c.extra, rrs...)
	r[name] = c
}

func (r recordSet) touch(name string) {
	if _, ok := r[name]; !ok {
		r[name] = contrib{}
	}
}

// entry is what the index knows about one name: the owners' records there, and references: one
// per owned name below it and one per owner asserting it exists without records. A name exists
// while it has either; an empty non-terminal exists exactly as long as something is below it.
type entry struct {
	refs    int
	byOwner map[string]contrib
}

// NewIndex returns an empty index. Until Replace is called it is not ready: cluster names that
// would be NXDOMAIN or NODATA are answered SERVFAIL.
func NewIndex(cfg Config) (*Index, error) {
	domain := strings.ToLower(strings.Trim(cfg.Domain, "."))
	if domain == "" {
		domain = DefaultDomain
	}
	zone := domain + "."
	if _, ok := dns.IsDomainName(zone); !ok {
		return nil, fmt.Errorf("cluster domain %q is not a domain name", cfg.Domain)
	}
	ix := &Index{
		zone:    zone,
		ttl:     cfg.TTL,
		podMode: cfg.PodMode,
		nsAddrs: slices.Clone(cfg.NameserverAddrs),
		now:     cfg.Now,
		owners:  map[string]recordSet{},
		entries: map[string]*entry{},
	}
	if ix.ttl == 0 {
		ix.ttl = DefaultTTL
	}
	if ix.now == nil {
		ix.now = time.Now
	}
	ix.update(func(t *txn) { t.setOwner(ownerStatic, ix.staticRecords()) })
	return ix, nil
}

// Zone is the cluster zone as a lowercased FQDN ("cluster.local.").
func (ix *Index) Zone() string { return ix.zone }

// TTL is the TTL of cluster records.
func (ix *Index) TTL() uint32 { return ix.ttl }

// Ready reports whether the index has had its first full build (Replace).
func (ix *Index) Ready() bool { return ix.snap.Load().ready }

// Serial is the zone's current SOA serial.
func (ix *Index) Serial() uint32 { return ix.snap.Load().soa.Serial }

// Names counts the names the index answers for (cluster names and reverse names).
func (ix *Index) Names() int {
	n := 0
	for _, sh := range ix.snap.Load().shards {
		n += len(sh)
	}
	return n
}

const ownerStatic = "static"

func ownerService(ns, name string) string { return "svc/" + ns + "/" + name }
func ownerNamespace(name string) string   { return "ns/" + name }
func ownerPod(ns, name string) string     { return "pod/" + ns + "/" + name }

// Replace rebuilds the index from a full listing and marks it ready. EndpointSlices belong to the
// Service their kubernetes.io/service-name label names; Pods matter only in PodModeVerified.
func (ix *Index) Replace(services []*corev1.Service, endpointSlices []*discoveryv1.EndpointSlice, pods []*corev1.Pod, namespaces []*corev1.Namespace) {
	bySvc := map[string][]*discoveryv1.EndpointSlice{}
	for _, s := range endpointSlices {
		if name := s.Labels[discoveryv1.LabelServiceName]; name != "" {
			k := s.Namespace + "/" + name
			bySvc[k] = append(bySvc[k], s)
		}
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.owners = map[string]recordSet{}
	ix.entries = map[string]*entry{}
	t := &txn{ix: ix, changed: map[string]struct{}{}}
	t.setOwner(ownerStatic, ix.staticRecords())
	for _, ns := range namespaces {
		t.setOwner(ownerNamespace(ns.Name), ix.namespaceRecords(ns.Name))
	}
	for _, svc := range services {
		t.setOwner(ownerService(svc.Namespace, svc.Name), ix.serviceRecords(svc, bySvc[svc.Namespace+"/"+svc.Name]))
	}
	if ix.podMode == PodModeVerified {
		for _, p := range pods {
			t.setOwner(ownerPod(p.Namespace, p.Name), ix.podRecords(p))
		}
	}
	ix.ready = true
	ix.publish(nil, true)
}

// SetService (re)derives one Service's records from it and its EndpointSlices.
func (ix *Index) SetService(svc *corev1.Service, endpointSlices []*discoveryv1.EndpointSlice) {
	ix.update(func(t *txn) {
		t.setOwner(ownerService(svc.Namespace, svc.Name), ix.serviceRecords(svc, endpointSlices))
	})
}

// DeleteService removes a Service's records.
func (ix *Index) DeleteService(namespace, name string) {
	ix.update(func(t *txn) { t.setOwner(ownerService(namespace, name), nil) })
}

// SetNamespace records that a namespace exists (or no longer does).
func (ix *Index) SetNamespace(name string, exists bool) {
	ix.update(func(t *txn) {
		if exists {
			t.setOwner(ownerNamespace(name), ix.namespaceRecords(name))
		} else {
			t.setOwner(ownerNamespace(name), nil)
		}
	})
}

// SetPod records a pod's addresses (PodModeVerified only; otherwise a no-op).
func (ix *Index) SetPod(pod *corev1.Pod) {
	if ix.podMode != PodModeVerified {
		return
	}
	ix.update(func(t *txn) { t.setOwner(ownerPod(pod.Namespace, pod.Name), ix.podRecords(pod)) })
}

// DeletePod forgets a pod's addresses.
func (ix *Index) DeletePod(namespace, name string) {
	if ix.podMode != PodModeVerified {
		return
	}
	ix.update(func(t *txn) { t.setOwner(ownerPod(namespace, name), nil) })
}

// update runs f as one transaction and publishes one snapshot for all it changed.
func (ix *Index) update(f func(t *txn)) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	t := &txn{ix: ix, changed: map[string]struct{}{}}
	f(t)
	ix.publish(t.changed, false)
}

type txn struct {
	ix      *Index
	changed map[string]struct{}
}

// setOwner replaces everything owner contributes with recs (nil removes the owner). A name with
// records is merged into its node; a name without (an assertion that it exists, like
// <ns>.svc.<zone> for every Service in the namespace) only counts a reference, so that the many
// owners of a namespace's name never make a one-Service update rebuild it.
func (t *txn) setOwner(owner string, recs recordSet) {
	ix := t.ix
	old := ix.owners[owner]
	for name, oc := range old {
		if nc, keep := recs[name]; keep && oc.isTouch() == nc.isTouch() {
			continue // the same kind: handled below
		}
		e := ix.entries[name]
		if oc.isTouch() {
			t.ref(name, e, -1)
		} else {
			delete(e.byOwner, owner)
			t.changed[name] = struct{}{}
			t.dropIfEmpty(name, e)
		}
		t.ancestors(name, -1)
	}
	for name, nc := range recs {
		oc, had := old[name]
		same := had && oc.isTouch() == nc.isTouch()
		if same && nc.isTouch() {
			continue
		}
		e := ix.entries[name]
		if e == nil {
			e = &entry{}
			ix.entries[name] = e
		}
		if nc.isTouch() {
			t.ref(name, e, +1)
		} else {
			if e.byOwner == nil {
				e.byOwner = map[string]contrib{}
			}
			e.byOwner[owner] = nc
			t.changed[name] = struct{}{}
		}
		if !same {
			t.ancestors(name, +1)
		}
	}
	if len(recs) == 0 {
		delete(ix.owners, owner)
	} else {
		ix.owners[owner] = recs
	}
}

func (c contrib) isTouch() bool { return len(c.rrs) == 0 && len(c.extra) == 0 }

// ref adjusts a name's reference count; the node changes only when the name starts or stops
// existing because of it.
func (t *txn) ref(name string, e *entry, d int) {
	before := e.refs
	e.refs += d
	if (before == 0) != (e.refs == 0) && len(e.byOwner) == 0 {
		t.changed[name] = struct{}{}
	}
	t.dropIfEmpty(name, e)
}

// ancestors adjusts the reference counts of the names between name and the zone apex (both
// exclusive). Reverse names are not in the zone and have none.
func (t *txn) ancestors(name string, d int) {
	ix := t.ix
	if !strings.HasSuffix(name, "."+ix.zone) {
		return
	}
	for p := parentName(name); len(p) > len(ix.zone); p = parentName(p) {
		e := ix.entries[p]
		if e == nil {
			e = &entry{}
			ix.entries[p] = e
		}
		t.ref(p, e, d)
	}
}

func (t *txn) dropIfEmpty(name string, e *entry) {
	if e.refs == 0 && len(e.byOwner) == 0 {
		delete(t.ix.entries, name)
	}
}

// parentName strips the first label of an FQDN.
func parentName(name string) string {
	for i := 0; i < len(name); i++ {
		switch name[i] {
		case '\\':
			i++
		case '.':
			return name[i+1:]
		}
	}
	return ""
}

// publish makes a new snapshot: changed names are rebuilt in copies of their shards, every other
// shard is shared with the previous snapshot. full rebuilds every shard.
func (ix *Index) publish(changed map[string]struct{}, full bool) {
	var s snapshot
	if old := ix.snap.Load(); old != nil && !full {
		s = *old
		var cloned [nShards]bool
		for name := range changed {
			i := shardOf(name)
			if !cloned[i] {
				s.shards[i] = maps.Clone(s.shards[i])
				if s.shards[i] == nil {
					s.shards[i] = map[string]*node{}
				}
				cloned[i] = true
			}
			if e := ix.entries[name]; e != nil {
				s.shards[i][name] = buildNode(e)
			} else {
				delete(s.shards[i], name)
			}
		}
	} else {
		for i := range s.shards {
			s.shards[i] = map[string]*node{}
		}
		for name, e := range ix.entries {
			s.shards[shardOf(name)][name] = buildNode(e)
		}
	}
	serial := uint32(ix.now().Unix())
	if serial <= ix.serial {
		serial = ix.serial + 1
	}
	ix.serial = serial
	s.zone = ix.zone
	s.ttl = ix.ttl
	s.podMode = ix.podMode
	s.ready = ix.ready
	s.soa = &dns.SOA{
		Hdr:     dns.RR_Header{Name: ix.zone, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: ix.ttl},
		Ns:      "ns.dns." + ix.zone,
		Mbox:    "hostmaster." + ix.zone,
		Serial:  serial,
		Refresh: soaRefresh,
		Retry:   soaRetry,
		Expire:  soaExpire,
		Minttl:  ix.ttl,
	}
	s.soaWire = packFull(s.soa)
	apex := recordSet{}
	apex.add(ix.zone, s.soa, &dns.NS{
		Hdr: dns.RR_Header{Name: ix.zone, Rrtype: dns.TypeNS, Class: dns.ClassINET, Ttl: ix.ttl},
		Ns:  "ns.dns." + ix.zone,
	})
	for _, a := range ix.nsAddrs {
		apex.addExtra(ix.zone, addrRR("ns.dns."+ix.zone, ix.ttl, a))
	}
	s.apex = buildNode(&entry{byOwner: map[string]contrib{ownerStatic: apex[ix.zone]}})
	ix.snap.Store(&s)
}

// buildNode merges the owners' contributions at one name into RRsets, deduplicated and sorted,
// and packs each for the wire.
func buildNode(e *entry) *node {
	owners := make([]string, 0, len(e.byOwner))
	for o := range e.byOwner {
		owners = append(owners, o)
	}
	sort.Strings(owners)
	byType := map[uint16][]dns.RR{}
	var extra []dns.RR
	for _, o := range owners {
		c := e.byOwner[o]
		for _, rr := range c.rrs {
			t := rr.Header().Rrtype
			byType[t] = append(byType[t], rr)
		}
		extra = append(extra, c.extra...)
	}
	n := &node{}
	types := make([]uint16, 0, len(byType))
	for t := range byType {
		types = append(types, t)
	}
	slices.Sort(types)
	extra = dedupSort(extra)
	for _, t := range types {
		set := &rrset{qtype: t, rrs: dedupSort(byType[t])}
		if t == dns.TypeSRV || t == dns.TypeNS {
			set.extra = extra
		}
		set.pack()
		n.sets = append(n.sets, set)
		if t == dns.TypeCNAME {
			n.cname = set.rrs[0].(*dns.CNAME)
		}
	}
	return n
}

func dedupSort(rrs []dns.RR) []dns.RR {
	if len(rrs) == 0 {
		return nil
	}
	type keyed struct {
		k  string
		rr dns.RR
	}
	ks := make([]keyed, 0, len(rrs))
	seen := map[string]bool{}
	for _, rr := range rrs {
		k := rrSortKey(rr)
		if seen[k] {
			continue
		}
		seen[k] = true
		ks = append(ks, keyed{k, rr})
	}
	sort.Slice(ks, func(i, j int) bool { return ks[i].k < ks[j].k })
	out := make([]dns.RR, len(ks))
	for i := range ks {
		out[i] = ks[i].rr
	}
	return out
}

// rrSortKey orders records by owner and type, addresses numerically, the rest by their text.
func rrSortKey(rr dns.RR) string {
	h := rr.Header()
	switch v := rr.(type) {
	case *dns.A:
		a, _ := netip.AddrFromSlice(v.A.To4())
		b := a.As4()
		return fmt.Sprintf("%s %05d %x", h.Name, h.Rrtype, b[:])
	case *dns.AAAA:
		a, _ := netip.AddrFromSlice(v.AAAA.To16())
		b := a.As16()
		return fmt.Sprintf("%s %05d %x", h.Name, h.Rrtype, b[:])
	}
	return fmt.Sprintf("%s %05d %s", h.Name, h.Rrtype, rr.String())
}
