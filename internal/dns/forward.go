package dns

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// ExchangeFunc sends one query to one upstream server ("host:port") and returns its answer.
type ExchangeFunc func(ctx context.Context, m *dns.Msg, upstream string) (*dns.Msg, error)

// ForwarderConfig configures a Forwarder.
type ForwarderConfig struct {
	// Upstreams are tried in order ("host:port"); the next is asked when one fails, times out or
	// answers SERVFAIL or REFUSED.
	Upstreams []string
	// Exchange sends a query (default: UDP, retried over TCP when truncated).
	Exchange ExchangeFunc
	// Timeout bounds one exchange (default 2 s).
	Timeout time.Duration
	// Now is the cache's clock (default time.Now).
	Now func() time.Time
	// CacheSize is the most answers cached (default 10000; negative disables the cache).
	CacheSize int
	// MaxTTL caps how long a positive answer is cached (default 3600 s), MaxNegativeTTL a negative
	// one (default 1800 s).
	MaxTTL, MaxNegativeTTL uint32
	// Metrics receives cache and upstream counters (optional).
	Metrics *Metrics
}

// Forwarder resolves names through upstream servers, with a cache that honours the answers' TTLs
// and caches NXDOMAIN and NODATA for the SOA's MINIMUM (capped by the SOA's own TTL), as RFC 2308
// says. Answers without an SOA, SERVFAIL, REFUSED and truncated answers are not cached.
type Forwarder struct {
	upstreams []string
	exchange  ExchangeFunc
	timeout   time.Duration
	now       func() time.Time
	maxTTL    uint32
	maxNegTTL uint32
	metrics   *Metrics
	cache     *answerCache
}

// NewForwarder returns a Forwarder. It needs at least one upstream.
func NewForwarder(cfg ForwarderConfig) (*Forwarder, error) {
	if len(cfg.Upstreams) == 0 {
		return nil, errors.New("dns forwarder: no upstream servers")
	}
	f := &Forwarder{
		upstreams: append([]string(nil), cfg.Upstreams...),
		exchange:  cfg.Exchange,
		timeout:   cfg.Timeout,
		now:       cfg.Now,
		maxTTL:    cfg.MaxTTL,
		maxNegTTL: cfg.MaxNegativeTTL,
		metrics:   cfg.Metrics,
	}
	for i, u := range f.upstreams {
		if _, _, err := net.SplitHostPort(u); err != nil {
			return nil, fmt.Errorf("dns forwarder: upstream %q: want host:port", u)
		}
		f.upstreams[i] = u
	}
	if f.timeout == 0 {
		f.timeout = 2 * time.Second
	}
	if f.exchange == nil {
		f.exchange = defaultExchange(f.timeout)
	}
	if f.now == nil {
		f.now = time.Now
	}
	if f.maxTTL == 0 {
		f.maxTTL = 3600
	}
	if f.maxNegTTL == 0 {
		f.maxNegTTL = 1800
	}
	size := cfg.CacheSize
	if size == 0 {
		size = 10000
	}
	if size > 0 {
		f.cache = newCache(size)
		f.metrics.watchCache(f.cache)
	}
	return f, nil
}

// Upstreams lists the upstream servers.
func (f *Forwarder) Upstreams() []string { return append([]string(nil), f.upstreams...) }

// upstreamUDPSize is the EDNS0 payload size podnet offers upstream servers.
const upstreamUDPSize = 1232

func defaultExchange(timeout time.Duration) ExchangeFunc {
	udp := &dns.Client{Net: "udp", Timeout: timeout, UDPSize: upstreamUDPSize}
	tcp := &dns.Client{Net: "tcp", Timeout: timeout}
	return func(ctx context.Context, m *dns.Msg, upstream string) (*dns.Msg, error) {
		r, _, err := udp.ExchangeContext(ctx, m, upstream)
		if err == nil && r.Truncated {
			r, _, err = tcp.ExchangeContext(ctx, m, upstream)
		}
		return r, err
	}
}

// Forward resolves one question upstream, from the cache when it can. The answer's question is
// q; its records' TTLs count down while cached. do and cd are the query's DNSSEC OK and
// Checking Disabled bits, passed upstream (and part of the cache key).
func (f *Forwarder) Forward(ctx context.Context, q dns.Question, do, cd bool) (*dns.Msg, error) {
	key := cacheKey{name: strings.ToLower(dns.Fqdn(q.Name)), qtype: q.Qtype, qclass: q.Qclass, do: do, cd: cd}
	now := f.now()
	if f.cache != nil {
		if m, negative, ok := f.cache.get(key, now); ok {
			f.metrics.cacheHit(negative)
			m.Question = []dns.Question{q}
			return m, nil
		}
		f.metrics.cacheMiss()
	}
	req := new(dns.Msg)
	req.SetQuestion(dns.Fqdn(q.Name), q.Qtype)
	req.Question[0].Qclass = q.Qclass
	req.CheckingDisabled = cd
	req.SetEdns0(upstreamUDPSize, do)
	var resp *dns.Msg
	var errs []error
	for _, u := range f.upstreams {
		start := time.Now()
		cctx, cancel := context.WithTimeout(ctx, f.timeout)
		r, err := f.exchange(cctx, req, u)
		cancel()
		f.metrics.forwarded(u, r, err, time.Since(start))
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", u, err))
			if ctx.Err() != nil {
				break
			}
			continue
		}
		resp = r
		if r.Rcode != dns.RcodeServerFailure && r.Rcode != dns.RcodeRefused {
			break
		}
	}
	if resp == nil {
		return nil, fmt.Errorf("dns forwarder: %s %s: %w", q.Name, dns.TypeToString[q.Qtype], errors.Join(errs...))
	}
	out := new(dns.Msg)
	out.Response = true
	out.Rcode = resp.Rcode
	out.RecursionAvailable = resp.RecursionAvailable
	out.AuthenticatedData = resp.AuthenticatedData
	out.Truncated = resp.Truncated
	out.Question = []dns.Question{q}
	out.Answer = resp.Answer
	out.Ns = resp.Ns
	for _, rr := range resp.Extra {
		if rr.Header().Rrtype != dns.TypeOPT {
			out.Extra = append(out.Extra, rr)
		}
	}
	if f.cache != nil {
		if ttl, negative, ok := f.cacheTTL(out); ok {
			f.cache.put(key, out.Copy(), negative, now, ttl)
		}
	}
	return out, nil
}

// cacheTTL says how long an answer may be cached: the smallest TTL of its records for a positive
// answer; for NXDOMAIN or NODATA, the SOA's MINIMUM or its TTL, whichever is smaller (RFC 2308
// section 5).
func (f *Forwarder) cacheTTL(m *dns.Msg) (ttl uint32, negative, ok bool) {
	if m.Truncated {
		return 0, false, false
	}
	switch {
	case m.Rcode == dns.RcodeNameError, m.Rcode == dns.RcodeSuccess && len(m.Answer) == 0:
		for _, rr := range m.Ns {
			if soa, isSOA := rr.(*dns.SOA); isSOA {
				ttl = min(soa.Hdr.Ttl, soa.Minttl, f.maxNegTTL)
				return ttl, true, ttl > 0
			}
		}
		return 0, true, false
	case m.Rcode == dns.RcodeSuccess:
		ttl = f.maxTTL
		for _, sec := range [][]dns.RR{m.Answer, m.Ns, m.Extra} {
			for _, rr := range sec {
				ttl = min(ttl, rr.Header().Ttl)
			}
		}
		return ttl, false, ttl > 0
	}
	return 0, false, false
}

type cacheKey struct {
	name          string
	qtype, qclass uint16
	do, cd        bool
}

type cacheEntry struct {
	msg      *dns.Msg
	stored   time.Time
	expires  time.Time
	negative bool
}

const cacheShards = 32

// answerCache is a sharded map of answers; a full shard evicts an expired entry, or else any.
type answerCache struct {
	perShard int
	shards   [cacheShards]struct {
		mu sync.Mutex
		m  map[cacheKey]*cacheEntry
	}
}

func newCache(size int) *answerCache {
	c := &answerCache{perShard: max(1, size/cacheShards)}
	for i := range c.shards {
		c.shards[i].m = map[cacheKey]*cacheEntry{}
	}
	return c
}

func (c *answerCache) shard(k cacheKey) int {
	return int(shardOf(k.name)+uint32(k.qtype)) % cacheShards
}

// get returns a copy of a live entry with every TTL lowered by the whole seconds it has been
// cached.
func (c *answerCache) get(k cacheKey, now time.Time) (*dns.Msg, bool, bool) {
	sh := &c.shards[c.shard(k)]
	sh.mu.Lock()
	e := sh.m[k]
	if e != nil && !now.Before(e.expires) {
		delete(sh.m, k)
		e = nil
	}
	sh.mu.Unlock()
	if e == nil {
		return nil, false, false
	}
	m := e.msg.Copy()
	age := uint32(now.Sub(e.stored) / time.Second)
	for _, sec := range [][]dns.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range sec {
			h := rr.Header()
			if h.Ttl > age {
				h.Ttl -= age
			} else {
				h.Ttl = 0
			}
		}
	}
	return m, e.negative, true
}

func (c *answerCache) put(k cacheKey, m *dns.Msg, negative bool, now time.Time, ttl uint32) {
	sh := &c.shards[c.shard(k)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if _, ok := sh.m[k]; !ok && len(sh.m) >= c.perShard {
		var victim cacheKey
		found := false
		for kk, e := range sh.m {
			if !found || !now.Before(e.expires) {
				victim, found = kk, true
			}
			if !now.Before(e.expires) {
				break
			}
		}
		delete(sh.m, victim)
	}
	sh.m[k] = &cacheEntry{msg: m, stored: now, expires: now.Add(time.Duration(ttl) * time.Second), negative: negative}
}

// len counts entries, positive and negative.
func (c *answerCache) len() (positive, negative int) {
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		for _, e := range sh.m {
			if e.negative {
				negative++
			} else {
				positive++
			}
		}
		sh.mu.Unlock()
	}
	return positive, negative
}

// UpstreamsFromResolvConf reads the nameserver lines of a resolv.conf, as host:53.
func UpstreamsFromResolvConf(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 || fields[0] != "nameserver" {
			continue
		}
		host := fields[1]
		if _, err := netip.ParseAddr(strings.SplitN(host, "%", 2)[0]); err != nil {
			continue
		}
		out = append(out, net.JoinHostPort(host, "53"))
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no nameserver lines", path)
	}
	return out, nil
}

// ParseUpstreams turns "1.1.1.1,8.8.8.8:53,[2606:4700::1111]" into host:port forms (port 53 by
// default).
func ParseUpstreams(list []string) ([]string, error) {
	var out []string
	for _, item := range list {
		for _, s := range strings.Split(item, ",") {
			s = strings.TrimSpace(s)
			if s == "" {
				continue
			}
			if a, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil {
				out = append(out, net.JoinHostPort(a.String(), "53"))
				continue
			}
			host, port, err := net.SplitHostPort(s)
			if err != nil || host == "" || port == "" {
				return nil, fmt.Errorf("upstream %q: want IP or host:port", s)
			}
			out = append(out, net.JoinHostPort(host, port))
		}
	}
	return out, nil
}
