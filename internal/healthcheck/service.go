// Package healthcheck provides kube-proxy-compatible health servers for one node: a per-Service
// server on each healthCheckNodePort (Services with externalTrafficPolicy Local), which external
// load balancers probe to learn whether this node has local endpoints, and the proxy's own
// /healthz and /livez server (kube-proxy's :10256).
//
// Neither server picks a network namespace itself: callers pass listeners (or a listen function)
// made in the node's namespace, for example with netnsutil.Listen, so many nodes' servers can share
// one process.
package healthcheck

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

// ListenFunc opens a listener like net.Listen, in the node's network namespace.
type ListenFunc func(network, address string) (net.Listener, error)

// HealthChecker reports whether the proxy is healthy (ProxyHealthServer implements it).
type HealthChecker interface {
	IsHealthy() bool
}

// ServiceHealthServer serves kube-proxy's per-Service health checks: for every Service with
// externalTrafficPolicy Local and a healthCheckNodePort, an HTTP server on that port, on all
// addresses of the node, answering any path with the number of local ready endpoints; 200 when
// there is at least one (and the proxy is healthy), 503 otherwise.
type ServiceHealthServer struct {
	listen ListenFunc
	log    *slog.Logger

	mu        sync.RWMutex
	closed    bool
	proxy     HealthChecker
	services  map[types.NamespacedName]*hcInstance
	endpoints map[types.NamespacedName]int
	wg        sync.WaitGroup
}

type hcInstance struct {
	port   uint16
	server *http.Server
}

// New returns a ServiceHealthServer that opens its listeners with listen (network "tcp", address
// ":PORT"); log may be nil.
func New(listen func(network, addr string) (net.Listener, error), log *slog.Logger) *ServiceHealthServer {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &ServiceHealthServer{
		listen:    listen,
		log:       log,
		services:  map[types.NamespacedName]*hcInstance{},
		endpoints: map[types.NamespacedName]int{},
	}
}

// SetProxyHealth makes the Service health checks fail (503, "serviceProxyHealthy": false) while
// the proxy is unhealthy, as kube-proxy's do. Without it the proxy counts as healthy.
func (s *ServiceHealthServer) SetProxyHealth(h HealthChecker) {
	s.mu.Lock()
	s.proxy = h
	s.mu.Unlock()
}

// SyncServices makes the set of health check servers match services (Service → healthCheckNodePort):
// servers of Services no longer present, or whose port changed, are closed first, then missing ones
// are opened. A port that cannot be bound is logged and tried again on the next call.
func (s *ServiceHealthServer) SyncServices(services map[types.NamespacedName]uint16) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	for nsn, inst := range s.services {
		if port, ok := services[nsn]; !ok || port != inst.port {
			s.log.Debug("closing service health check", "service", nsn.String(), "port", inst.port)
			_ = inst.server.Close()
			delete(s.services, nsn)
		}
	}
	for nsn, port := range services {
		if s.services[nsn] != nil {
			continue
		}
		if port == 0 {
			s.log.Error("service health check without a port", "service", nsn.String())
			continue
		}
		l, err := s.listen("tcp", net.JoinHostPort("", strconv.Itoa(int(port))))
		if err != nil {
			s.log.Error("failed to start service health check; will retry on the next sync",
				"service", nsn.String(), "port", port, "err", err)
			continue
		}
		s.log.Debug("opened service health check", "service", nsn.String(), "port", port)
		srv := &http.Server{
			Handler:           serviceHandler{s: s, nsn: nsn},
			ReadHeaderTimeout: 10 * time.Second,
			ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		}
		s.services[nsn] = &hcInstance{port: port, server: srv}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.log.Error("service health check server stopped", "service", nsn.String(), "port", port, "err", err)
			}
		}()
	}
}

// SyncEndpoints records the number of local ready endpoints per Service; Services missing from
// counts have none.
func (s *ServiceHealthServer) SyncEndpoints(counts map[types.NamespacedName]int) {
	m := make(map[types.NamespacedName]int, len(counts))
	for nsn, n := range counts {
		m[nsn] = n
	}
	s.mu.Lock()
	s.endpoints = m
	s.mu.Unlock()
}

// Ports returns the Services whose health check server is listening, with their ports.
func (s *ServiceHealthServer) Ports() map[types.NamespacedName]uint16 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	m := make(map[types.NamespacedName]uint16, len(s.services))
	for nsn, inst := range s.services {
		m[nsn] = inst.port
	}
	return m
}

// Close closes every health check server and waits for them to stop. Later syncs do nothing.
func (s *ServiceHealthServer) Close() {
	s.mu.Lock()
	s.closed = true
	for nsn, inst := range s.services {
		_ = inst.server.Close()
		delete(s.services, nsn)
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// Shutdown is Close that lets in-flight requests finish until ctx is done.
func (s *ServiceHealthServer) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	servers := make([]*http.Server, 0, len(s.services))
	for nsn, inst := range s.services {
		servers = append(servers, inst.server)
		delete(s.services, nsn)
	}
	s.mu.Unlock()
	var errs []error
	for _, srv := range servers {
		if err := srv.Shutdown(ctx); err != nil {
			errs = append(errs, err)
			_ = srv.Close()
		}
	}
	s.wg.Wait()
	return errors.Join(errs...)
}

// serviceHealthResponse is kube-proxy's response body, field order included.
type serviceHealthResponse struct {
	Service struct {
		Namespace string `json:"namespace"`
		Name      string `json:"name"`
	} `json:"service"`
	LocalEndpoints      int  `json:"localEndpoints"`
	ServiceProxyHealthy bool `json:"serviceProxyHealthy"`
}

type serviceHandler struct {
	s   *ServiceHealthServer
	nsn types.NamespacedName
}

func (h serviceHandler) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	h.s.mu.RLock()
	_, open := h.s.services[h.nsn]
	count := h.s.endpoints[h.nsn]
	proxy := h.s.proxy
	h.s.mu.RUnlock()

	healthy := proxy == nil || proxy.IsHealthy()
	var body serviceHealthResponse
	body.Service.Namespace = h.nsn.Namespace
	body.Service.Name = h.nsn.Name
	body.LocalEndpoints = count
	body.ServiceProxyHealthy = healthy
	b, _ := json.Marshal(body)

	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if open && count > 0 && healthy {
		w.WriteHeader(http.StatusOK)
	} else {
		// Also for a request that raced with the server being closed.
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_, _ = w.Write(b)
}
