package dns

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"time"
	"unsafe"

	"github.com/miekg/dns"
)

// ServerConfig configures a Server.
type ServerConfig struct {
	// Index answers the cluster zone (required).
	Index *Index
	// Forwarder resolves every other name; nil refuses them.
	Forwarder *Forwarder
	// Metrics (default: NewMetrics()).
	Metrics *Metrics
	// UDPSize is the largest UDP answer sent to an EDNS0 client, and the payload size advertised
	// in its OPT record (default 1232, the DNS flag day 2020 size). Clients without EDNS0 get 512.
	UDPSize int
	// Workers is the number of goroutines reading each UDP socket (default GOMAXPROCS).
	Workers int
	// MaxInflight bounds the queries being answered off the UDP readers (forwarding); beyond it
	// queries are dropped and the client retries (default 1024).
	MaxInflight int
	// ForwardTimeout bounds one forwarded query, all upstreams together (default 5 s).
	ForwardTimeout time.Duration
	// Logger (default slog.Default()).
	Logger *slog.Logger
}

// Server answers DNS over UDP and TCP on sockets it is given.
type Server struct {
	ix         *Index
	res        *Resolver
	fwd        *Forwarder
	metrics    *Metrics
	udpSize    uint16
	workers    int
	inflight   chan struct{}
	fwdTimeout time.Duration
	log        *slog.Logger
	tcpWorkers sync.Pool
}

// Timeouts of TCP connections, as miekg/dns's server: the first query must arrive within
// tcpReadTimeout, later ones within tcpIdleTimeout.
const (
	tcpReadTimeout  = 2 * time.Second
	tcpIdleTimeout  = 8 * time.Second
	tcpWriteTimeout = 2 * time.Second
)

// NewServer returns a Server.
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.Index == nil {
		return nil, errors.New("dns server: no index")
	}
	s := &Server{
		ix:         cfg.Index,
		res:        NewResolver(cfg.Index),
		fwd:        cfg.Forwarder,
		metrics:    cfg.Metrics,
		workers:    cfg.Workers,
		fwdTimeout: cfg.ForwardTimeout,
		log:        cfg.Logger,
	}
	if s.metrics == nil {
		s.metrics = NewMetrics()
	}
	switch {
	case cfg.UDPSize == 0:
		s.udpSize = 1232
	case cfg.UDPSize < dns.MinMsgSize || cfg.UDPSize > dns.MaxMsgSize:
		return nil, fmt.Errorf("dns server: UDP size %d: want %d..%d", cfg.UDPSize, dns.MinMsgSize, dns.MaxMsgSize)
	default:
		s.udpSize = uint16(cfg.UDPSize)
	}
	if s.workers <= 0 {
		s.workers = runtime.GOMAXPROCS(0)
	}
	n := cfg.MaxInflight
	if n <= 0 {
		n = 1024
	}
	s.inflight = make(chan struct{}, n)
	if s.fwdTimeout <= 0 {
		s.fwdTimeout = 5 * time.Second
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.tcpWorkers.New = func() any { return newWorker(nil) }
	return s, nil
}

// Metrics returns the server's metrics.
func (s *Server) Metrics() *Metrics { return s.metrics }

// Index returns the server's index.
func (s *Server) Index() *Index { return s.ix }

// Handle answers one request as a dns.Msg: cluster names from the Index, others through the
// Forwarder, FORMERR/NOTIMP/BADVERS for what is not a plain query. The answer carries an OPT
// record when the request did; it is not truncated (the transport does that). It returns nil for
// a message that must not be answered (a response).
func (s *Server) Handle(ctx context.Context, req *dns.Msg) *dns.Msg {
	if req.Response {
		return nil
	}
	opt := req.IsEdns0()
	var m *dns.Msg
	switch {
	case req.Opcode != dns.OpcodeQuery:
		m = new(dns.Msg).SetRcode(req, dns.RcodeNotImplemented)
	case len(req.Question) != 1:
		m = new(dns.Msg).SetRcode(req, dns.RcodeFormatError)
	case opt != nil && opt.Version() != 0:
		m = new(dns.Msg).SetRcode(req, dns.RcodeBadVers)
	default:
		m = s.answer(ctx, req)
	}
	m.RecursionAvailable = true
	if opt != nil {
		m.SetEdns0(s.udpSize, opt.Do())
	}
	return m
}

func (s *Server) answer(ctx context.Context, req *dns.Msg) *dns.Msg {
	q := req.Question[0]
	do := false
	if opt := req.IsEdns0(); opt != nil {
		do = opt.Do()
	}
	m := s.res.Resolve(req)
	if m == nil {
		return s.forward(ctx, req, do)
	}
	if target, ok := externalTarget(m, q.Qtype, s.ix.snap.Load()); ok && s.fwd != nil {
		ctx, cancel := context.WithTimeout(ctx, s.fwdTimeout)
		defer cancel()
		r, err := s.fwd.Forward(ctx, dns.Question{Name: target, Qtype: q.Qtype, Qclass: q.Qclass}, do, req.CheckingDisabled)
		if err != nil {
			s.log.Debug("dns: following CNAME upstream", "name", q.Name, "target", target, "err", err)
			return m
		}
		m.Answer = append(m.Answer, r.Answer...)
		m.Rcode = r.Rcode
		if len(r.Answer) == 0 {
			m.Ns = r.Ns
		}
	}
	return m
}

func (s *Server) forward(ctx context.Context, req *dns.Msg, do bool) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(req)
	if s.fwd == nil {
		m.Rcode = dns.RcodeRefused
		return m
	}
	ctx, cancel := context.WithTimeout(ctx, s.fwdTimeout)
	defer cancel()
	r, err := s.fwd.Forward(ctx, req.Question[0], do, req.CheckingDisabled)
	if err != nil {
		s.log.Debug("dns: forwarding", "name", req.Question[0].Name, "err", err)
		m.Rcode = dns.RcodeServerFailure
		return m
	}
	m.Rcode = r.Rcode
	m.AuthenticatedData = r.AuthenticatedData
	m.Answer, m.Ns, m.Extra = r.Answer, r.Ns, r.Extra
	return m
}

// worker holds one reader's buffers and counters.
type worker struct {
	name  [maxNameLen + 1]byte
	out   []byte
	dyn   []byte
	oob   []byte
	oobW  []byte
	rot   uint32
	stats *statShard
}

func newWorker(stats *statShard) *worker {
	return &worker{
		out:   make([]byte, 0, dns.MaxMsgSize+2),
		dyn:   make([]byte, 0, 64),
		oob:   make([]byte, 128),
		oobW:  make([]byte, 64),
		stats: stats,
	}
}

// fastAnswer answers a plain query about the cluster zone straight from the pre-packed records,
// appending the answer to prefix. ok is false when the query needs the dns.Msg path, which is
// also the one that truncates.
func (s *Server) fastAnswer(w *worker, req, prefix []byte, udp bool) (resp []byte, qtype uint16, rcode int, ok bool) {
	q, n, shard, ok := parseQuery(req, &w.name)
	if !ok {
		return nil, 0, 0, false
	}
	snap := s.ix.snap.Load()
	// The name lives in the worker's buffer and is used only during this lookup.
	res := snap.lookup(unsafe.String(&w.name[0], n), shard, q.qtype, q.qclass)
	var set *rrset
	var dyn, auth []byte
	aa := true
	switch res.kind {
	case resAnswer:
		if res.set == nil {
			return nil, 0, 0, false
		}
		set = res.set
	case resPod:
		dyn = appendAddrRecord(w.dyn[:0], res, snap.ttl)
	case resNoData:
		auth = snap.soaWire
	case resNXDomain:
		rcode = dns.RcodeNameError
		auth = snap.soaWire
	case resServFail:
		rcode = dns.RcodeServerFailure
		aa = false
	default:
		return nil, 0, 0, false
	}
	limit := dns.MaxMsgSize
	switch {
	case udp && q.edns:
		limit = min(int(s.udpSize), max(int(q.udpSize), dns.MinMsgSize))
	case udp:
		limit = dns.MinMsgSize
	}
	w.rot++
	out := appendResponse(prefix, req, &q, rcode, aa, set, true, w.rot, dyn, auth, s.udpSize)
	if len(out)-len(prefix) > limit && set != nil && len(set.extra) > 0 {
		// Additional records are optional: leave them out rather than truncate (RFC 2181 9).
		out = appendResponse(prefix, req, &q, rcode, aa, set, false, w.rot, dyn, auth, s.udpSize)
	}
	if len(out)-len(prefix) > limit {
		return nil, 0, 0, false
	}
	return out, q.qtype, rcode, true
}

// slowAnswer answers any message through Handle and packs it, truncated to the transport's
// limit (maxUDP for UDP, nothing for TCP) with the TC bit set when records had to go.
func (s *Server) slowAnswer(ctx context.Context, b []byte, udp bool) (resp []byte, qtype uint16, rcode int) {
	req := new(dns.Msg)
	if err := req.Unpack(b); err != nil {
		// Answer FORMERR when the header at least is a query's.
		if len(b) < headerLen || b[2]&0x80 != 0 {
			return nil, 0, -1
		}
		out := make([]byte, headerLen)
		copy(out, b[:2])
		binary.BigEndian.PutUint16(out[2:], flagQR|binary.BigEndian.Uint16(b[2:])&(flagOpcode|flagRD)|dns.RcodeFormatError)
		return out, 0, dns.RcodeFormatError
	}
	m := s.Handle(ctx, req)
	if m == nil {
		return nil, 0, -1
	}
	if len(req.Question) > 0 {
		qtype = req.Question[0].Qtype
	}
	limit := dns.MaxMsgSize
	if udp {
		limit = dns.MinMsgSize
		if opt := req.IsEdns0(); opt != nil {
			limit = min(int(s.udpSize), max(int(opt.UDPSize()), dns.MinMsgSize))
		}
	}
	m.Compress = true
	out, err := m.Pack()
	if err == nil && len(out) > limit {
		// Leave out the Additional records first, which needs no TC bit (RFC 2181 9), then
		// truncate the rest.
		extra := m.Extra
		m.Extra = nil
		for _, rr := range extra {
			if rr.Header().Rrtype == dns.TypeOPT {
				m.Extra = []dns.RR{rr}
			}
		}
		if out, err = m.Pack(); err == nil && len(out) > limit {
			m.Truncate(limit)
			out, err = m.Pack()
		}
	}
	if err != nil {
		s.log.Warn("dns: packing an answer", "err", err)
		fail := new(dns.Msg).SetRcode(req, dns.RcodeServerFailure)
		if out, err = fail.Pack(); err != nil {
			return nil, qtype, -1
		}
		return out, qtype, dns.RcodeServerFailure
	}
	return out, qtype, m.Rcode
}

func family(a netip.Addr) int {
	if a.Unmap().Is4() {
		return 0
	}
	return 1
}

// ServeUDP answers queries arriving on pc until ctx is done. It does not close pc. Queries that
// need no network I/O are answered on the reader goroutines; forwarded ones on goroutines of
// their own, at most MaxInflight at a time.
func (s *Server) ServeUDP(ctx context.Context, pc net.PacketConn) error {
	conn := newUDPConn(pc)
	// A reader failing stops the others too.
	rctx, stopReaders := context.WithCancel(ctx)
	defer stopReaders()
	stop := context.AfterFunc(rctx, func() { _ = pc.SetReadDeadline(time.Now()) })
	defer stop()
	var wg sync.WaitGroup
	errs := make([]error, s.workers)
	var readers sync.WaitGroup
	for i := 0; i < s.workers; i++ {
		readers.Add(1)
		go func() {
			defer readers.Done()
			if errs[i] = s.udpReader(rctx, conn, &wg); errs[i] != nil {
				stopReaders()
			}
		}()
	}
	readers.Wait()
	wg.Wait()
	if ctx.Err() != nil {
		return nil
	}
	return errors.Join(errs...)
}

func (s *Server) udpReader(ctx context.Context, conn *udpConn, wg *sync.WaitGroup) error {
	w := newWorker(s.metrics.newShard())
	buf := make([]byte, dns.MaxMsgSize)
	for {
		n, src, dst, err := conn.read(buf, w.oob)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		start := time.Now()
		req := buf[:n]
		if resp, qtype, rcode, ok := s.fastAnswer(w, req, w.out[:0], true); ok {
			if err := conn.write(resp, src, dst, w.oobW); err != nil {
				s.log.Debug("dns: UDP write", "to", src, "err", err)
			}
			w.stats.observe(protoUDP, family(src.Addr()), qtype, rcode, time.Since(start))
			continue
		}
		select {
		case s.inflight <- struct{}{}:
		default:
			continue // overloaded: drop, the client retries
		}
		cp := append([]byte(nil), req...)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-s.inflight }()
			resp, qtype, rcode := s.slowAnswer(ctx, cp, true)
			if resp == nil {
				return
			}
			if err := conn.write(resp, src, dst, make([]byte, 64)); err != nil {
				s.log.Debug("dns: UDP write", "to", src, "err", err)
			}
			s.metrics.shared.observe(protoUDP, family(src.Addr()), qtype, rcode, time.Since(start))
		}()
	}
}

// ServeTCP answers queries on connections accepted from l until ctx is done. It does not close
// l unless l has no SetDeadline to interrupt Accept with.
func (s *Server) ServeTCP(ctx context.Context, l net.Listener) error {
	stop := context.AfterFunc(ctx, func() {
		if d, ok := l.(interface{ SetDeadline(time.Time) error }); ok {
			_ = d.SetDeadline(time.Now())
		} else {
			_ = l.Close()
		}
	})
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	backoff := time.Duration(0)
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			// Out of file descriptors and the like: wait a little, as net/http does.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Warn("dns: TCP accept", "err", err, "retry_in", backoff)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(backoff):
			}
			continue
		}
		backoff = 0
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.serveTCPConn(ctx, c)
		}()
	}
}

func (s *Server) serveTCPConn(ctx context.Context, c net.Conn) {
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Now()) })
	defer stop()
	var fam int
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		fam = family(ta.AddrPort().Addr())
	}
	w := s.tcpWorkers.Get().(*worker)
	defer s.tcpWorkers.Put(w)
	br := bufio.NewReader(c)
	var lenBuf [2]byte
	req := make([]byte, 0, 512)
	timeout := tcpReadTimeout
	for {
		_ = c.SetReadDeadline(time.Now().Add(timeout))
		if _, err := io.ReadFull(br, lenBuf[:]); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint16(lenBuf[:]))
		if n == 0 {
			return
		}
		req = req[:0]
		if cap(req) < n {
			req = make([]byte, 0, n)
		}
		req = req[:n]
		if _, err := io.ReadFull(br, req); err != nil {
			return
		}
		start := time.Now()
		resp, qtype, rcode, ok := s.fastAnswer(w, req, w.out[:2], false)
		if !ok {
			var b []byte
			b, qtype, rcode = s.slowAnswer(ctx, req, false)
			if b == nil {
				timeout = tcpIdleTimeout
				continue
			}
			resp = append(w.out[:2], b...)
		}
		binary.BigEndian.PutUint16(resp, uint16(len(resp)-2))
		_ = c.SetWriteDeadline(time.Now().Add(tcpWriteTimeout))
		if _, err := c.Write(resp); err != nil {
			return
		}
		s.metrics.shared.observe(protoTCP, fam, qtype, rcode, time.Since(start))
		timeout = tcpIdleTimeout
	}
}
