// Package workload is the built-in workload server of lab pods.
//
// A lab pod whose container gives no command runs this server in the pod's network
// namespace. It serves every declared containerPort: HTTP on TCP ports and a
// one-datagram reply on UDP ports. Both answer with a JSON Reply naming the pod, its
// node and the client address the server saw, which is what connectivity checks need
// to tell which backend answered and whether the source address was preserved or
// translated on the way.
package workload

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Config says who the server is and what it serves.
type Config struct {
	// Pod, Namespace and Node identify the pod in replies.
	Pod, Namespace, Node string
	// PodIP is reported in replies. When empty, the local address the request
	// arrived on is reported instead (when known).
	PodIP string
	// Ports are served, TCP ports as HTTP and UDP ports as datagram echo of a Reply.
	Ports []Port
	// Listen is the host to bind; "" binds all addresses.
	Listen string
	// Log, when set, receives one record per request served.
	Log *slog.Logger
}

// Reply is what the server answers on every port.
type Reply struct {
	Pod       string `json:"pod"`
	Namespace string `json:"namespace"`
	Node      string `json:"node"`
	PodIP     string `json:"podIP"`
	Port      int    `json:"port"`
	Protocol  string `json:"protocol"`
	// Client is the client's address as seen by the server, "ip:port".
	Client string `json:"client"`
	// ClientIP is the IP part of Client.
	ClientIP string `json:"clientIP"`
}

// shutdownGrace bounds how long in-flight HTTP requests may take once Serve is told to stop.
const shutdownGrace = 2 * time.Second

// maxDatagram is the largest UDP payload read.
const maxDatagram = 64 * 1024

// Serve binds every port of cfg, calls ready (if not nil) once all of them listen, and
// serves until ctx is done; then it closes every socket and returns nil. If any port
// cannot be bound, Serve closes what it already bound and returns an error naming the
// port, without calling ready. If serving fails later, Serve stops everything and
// returns that error. With no ports, Serve just waits for ctx.
func Serve(ctx context.Context, cfg Config, ready func()) error {
	ports := make([]Port, len(cfg.Ports))
	for i, p := range cfg.Ports {
		p.Protocol = strings.ToUpper(p.Protocol)
		if p.Protocol != "TCP" && p.Protocol != "UDP" {
			return fmt.Errorf("workload: port %d: unsupported protocol %q (want TCP or UDP)", p.Port, p.Protocol)
		}
		if msgs := validation.IsValidPortNum(p.Port); len(msgs) > 0 {
			return fmt.Errorf("workload: port %d: %s", p.Port, strings.Join(msgs, "; "))
		}
		ports[i] = p
	}

	var (
		lc        net.ListenConfig
		listeners []net.Listener
		conns     []net.PacketConn
	)
	closeAll := func() {
		for _, l := range listeners {
			l.Close()
		}
		for _, c := range conns {
			c.Close()
		}
	}
	for _, p := range ports {
		addr := net.JoinHostPort(cfg.Listen, strconv.Itoa(p.Port))
		switch p.Protocol {
		case "TCP":
			l, err := lc.Listen(ctx, "tcp", addr)
			if err != nil {
				closeAll()
				return fmt.Errorf("workload: listen tcp %s: %w", addr, err)
			}
			listeners = append(listeners, l)
		case "UDP":
			c, err := lc.ListenPacket(ctx, "udp", addr)
			if err != nil {
				closeAll()
				return fmt.Errorf("workload: listen udp %s: %w", addr, err)
			}
			conns = append(conns, c)
		}
	}
	if ready != nil {
		ready()
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		errOnce  sync.Once
		serveErr error
	)
	fail := func(err error) {
		errOnce.Do(func() { serveErr = err })
		cancel()
	}
	var servers []*http.Server
	ti, ui := 0, 0
	for _, p := range ports {
		switch p.Protocol {
		case "TCP":
			l := listeners[ti]
			ti++
			srv := &http.Server{
				Handler:           &httpHandler{cfg: &cfg, port: p.Port},
				ReadHeaderTimeout: 10 * time.Second,
			}
			servers = append(servers, srv)
			wg.Go(func() {
				if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
					fail(fmt.Errorf("workload: serve tcp %s: %w", l.Addr(), err))
				}
			})
		case "UDP":
			c := conns[ui]
			ui++
			wg.Go(func() {
				if err := serveUDP(c, &cfg, p.Port); err != nil && ctx.Err() == nil {
					fail(fmt.Errorf("workload: serve udp %s: %w", c.LocalAddr(), err))
				}
			})
		}
	}

	<-ctx.Done()
	sctx, scancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer scancel()
	for _, srv := range servers {
		if err := srv.Shutdown(sctx); err != nil {
			srv.Close()
		}
	}
	closeAll()
	wg.Wait()
	return serveErr
}

type httpHandler struct {
	cfg  *Config
	port int
}

func (h *httpHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/healthz" {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok"))
		return
	}
	local := ""
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		local = a.String()
	}
	reply := makeReply(h.cfg, h.port, "TCP", r.RemoteAddr, local)
	body, _ := json.Marshal(reply)
	w.Header().Set("Content-Type", "application/json")
	w.Write(append(body, '\n'))
	if h.cfg.Log != nil {
		h.cfg.Log.Info("request", "protocol", "TCP", "port", h.port, "client", reply.Client,
			"method", r.Method, "path", r.URL.Path)
	}
}

func serveUDP(c net.PacketConn, cfg *Config, port int) error {
	buf := make([]byte, maxDatagram)
	local := c.LocalAddr().String()
	for {
		_, addr, err := c.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		reply := makeReply(cfg, port, "UDP", addr.String(), local)
		body, _ := json.Marshal(reply)
		if _, err := c.WriteTo(append(body, '\n'), addr); err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			// A reply that cannot be sent (e.g. the client's route went away) is the
			// client's loss, not a reason to stop serving.
			if cfg.Log != nil {
				cfg.Log.Warn("udp reply failed", "port", port, "client", addr.String(), "err", err)
			}
			continue
		}
		if cfg.Log != nil {
			cfg.Log.Info("request", "protocol", "UDP", "port", port, "client", reply.Client)
		}
	}
}

// makeReply builds the reply for a request from client to local (both "ip:port").
func makeReply(cfg *Config, port int, proto, client, local string) Reply {
	r := Reply{
		Pod:       cfg.Pod,
		Namespace: cfg.Namespace,
		Node:      cfg.Node,
		PodIP:     cfg.PodIP,
		Port:      port,
		Protocol:  proto,
		Client:    client,
		ClientIP:  client,
	}
	if host, _, err := net.SplitHostPort(client); err == nil {
		r.ClientIP = host
	}
	if r.PodIP == "" {
		if host, _, err := net.SplitHostPort(local); err == nil {
			if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() {
				r.PodIP = host
			}
		}
	}
	return r
}
