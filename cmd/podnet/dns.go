package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/podnet/podnet/internal/dns"
	"github.com/podnet/podnet/internal/lab"
	"github.com/podnet/podnet/internal/serve"
)

// dnsFlags are podnet dns's flags.
type dnsFlags struct {
	lab         string
	apiSocket   string
	kubeconfig  string
	listen      string
	domain      string
	upstreams   []string
	resolvConf  string
	metrics     string
	ttl         uint32
	pods        string
	nameservers []string
	workers     int
}

func newDNSCmd() *cobra.Command {
	var f dnsFlags
	c := &cobra.Command{
		Use:   "dns",
		Short: "Serve cluster DNS (Kubernetes DNS-Based Service Discovery 1.1.0) and forward other names upstream",
		Long: "podnet dns answers the cluster domain from Services, EndpointSlices and Namespaces it watches\n" +
			"(A/AAAA, SRV, PTR, CNAME for ExternalName, pod records, dns-version, SOA/NS), over UDP and TCP\n" +
			"with EDNS0, and forwards every other name to upstream servers through a cache.\n\n" +
			"It reads the cluster from --kubeconfig, or from the in-cluster configuration when it runs in a pod,\n" +
			"or else from $KUBECONFIG or ~/.kube/config. Upstreams default to the nameservers of --resolv-conf.",
		Example: "  podnet dns --kubeconfig ~/.kube/config --listen 127.0.0.1:5353 --upstream 1.1.1.1,8.8.8.8\n" +
			"  dig @127.0.0.1 -p 5353 kubernetes.default.svc.cluster.local",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := dnsRestConfig(&f)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runDNS(ctx, cfg, &f, cmd.ErrOrStderr())
		},
	}
	fl := c.Flags()
	fl.StringVar(&f.apiSocket, "api-socket", "", "serve the cluster behind this lab API socket (what lab pods use: they have no lab environment)")
	fl.StringVar(&f.lab, "lab", "", "serve the cluster of this podnet lab (through its API socket) instead of a kubeconfig")
	fl.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig of the cluster to serve (default: in-cluster config, then $KUBECONFIG or ~/.kube/config)")
	fl.StringVar(&f.listen, "listen", ":53", "UDP and TCP address to answer on")
	fl.StringVar(&f.domain, "domain", dns.DefaultDomain, "cluster domain")
	fl.StringSliceVar(&f.upstreams, "upstream", nil, "upstream servers for other names, IP or host:port, comma-separated (default: the nameservers of --resolv-conf)")
	fl.StringVar(&f.resolvConf, "resolv-conf", "/etc/resolv.conf", "where the default upstream servers come from")
	fl.StringVar(&f.metrics, "metrics", ":9153", "address serving Prometheus /metrics, /health and /ready (\"\" disables)")
	fl.Uint32Var(&f.ttl, "ttl", dns.DefaultTTL, "TTL of cluster records and of negative answers, in seconds")
	fl.StringVar(&f.pods, "pods", "insecure", "pod records <ip-dashed>.<ns>.pod.<domain>: insecure (any address), verified (only pods' addresses; watches Pods) or disabled")
	fl.StringSliceVar(&f.nameservers, "nameserver-addr", nil, "addresses of ns.dns.<domain>, the zone's NS record (typically the DNS Service's ClusterIP)")
	fl.IntVar(&f.workers, "workers", 0, "goroutines reading the UDP socket (default GOMAXPROCS)")
	return c
}

// dnsRestConfig finds the cluster podnet dns serves: --kubeconfig, else the in-cluster
// configuration, else the usual kubeconfig loading rules ($KUBECONFIG, ~/.kube/config).
func dnsRestConfig(f *dnsFlags) (*rest.Config, error) {
	if f.apiSocket != "" {
		return lab.RestConfigForSocket(f.apiSocket), nil
	}
	if f.lab != "" {
		cfg, err := lab.RestConfig(f.lab)
		if err != nil {
			return nil, fmt.Errorf("--lab %s: %w", f.lab, err)
		}
		return cfg, nil
	}
	if f.kubeconfig != "" {
		cfg, err := clientcmd.BuildConfigFromFlags("", f.kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("--kubeconfig %s: %w", f.kubeconfig, err)
		}
		return cfg, nil
	}
	cfg, err := rest.InClusterConfig()
	if err == nil {
		return cfg, nil
	}
	if !errors.Is(err, rest.ErrNotInCluster) {
		return nil, fmt.Errorf("in-cluster config: %w", err)
	}
	cfg, err = clientcmd.NewNonInteractiveDeferredLoadingClientConfig(clientcmd.NewDefaultClientConfigLoadingRules(), nil).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("no --kubeconfig, not running in a cluster, and no usable $KUBECONFIG or ~/.kube/config: %w", err)
	}
	return cfg, nil
}

// runDNS serves DNS for the cluster behind cfg until ctx is done.
func runDNS(ctx context.Context, cfg *rest.Config, f *dnsFlags, stderr io.Writer) error {
	log := slog.New(slog.NewTextHandler(stderr, nil))
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	podMode, err := dns.ParsePodMode(f.pods)
	if err != nil {
		return fmt.Errorf("--pods: %w", err)
	}
	var nsAddrs []netip.Addr
	for _, item := range f.nameservers {
		for _, s := range strings.Split(item, ",") {
			if s = strings.TrimSpace(s); s == "" {
				continue
			}
			a, err := netip.ParseAddr(s)
			if err != nil {
				return fmt.Errorf("--nameserver-addr %q: %w", s, err)
			}
			nsAddrs = append(nsAddrs, a)
		}
	}
	upstreams, err := dns.ParseUpstreams(f.upstreams)
	if err != nil {
		return fmt.Errorf("--upstream: %w", err)
	}
	if len(upstreams) == 0 {
		if upstreams, err = dns.UpstreamsFromResolvConf(f.resolvConf); err != nil {
			return fmt.Errorf("no --upstream, and %w", err)
		}
	}
	ix, err := dns.NewIndex(dns.Config{Domain: f.domain, TTL: f.ttl, PodMode: podMode, NameserverAddrs: nsAddrs})
	if err != nil {
		return err
	}
	metrics := dns.NewMetrics()
	fwd, err := dns.NewForwarder(dns.ForwarderConfig{Upstreams: upstreams, Metrics: metrics})
	if err != nil {
		return err
	}
	srv, err := dns.NewServer(dns.ServerConfig{Index: ix, Forwarder: fwd, Metrics: metrics, Workers: f.workers, Logger: log})
	if err != nil {
		return err
	}

	pc, err := net.ListenPacket("udp", f.listen)
	if err != nil {
		return err
	}
	defer pc.Close()
	l, err := net.Listen("tcp", f.listen)
	if err != nil {
		return err
	}
	defer l.Close()
	var ml net.Listener
	if f.metrics != "" {
		if ml, err = net.Listen("tcp", f.metrics); err != nil {
			return fmt.Errorf("--metrics: %w", err)
		}
		defer ml.Close()
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, 3)
	run := func(name string, fn func() error) {
		go func() {
			err := fn()
			if err != nil {
				err = fmt.Errorf("%s: %w", name, err)
				cancel()
			}
			errs <- err
		}()
	}
	run("udp", func() error { return srv.ServeUDP(ctx, pc) })
	run("tcp", func() error { return srv.ServeTCP(ctx, l) })
	running := 2
	if ml != nil {
		mux := http.NewServeMux()
		mux.Handle("/metrics", metrics.Handler())
		mux.HandleFunc("/health", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "OK") })
		mux.HandleFunc("/ready", func(w http.ResponseWriter, _ *http.Request) {
			if !ix.Ready() {
				http.Error(w, "index not synced", http.StatusServiceUnavailable)
				return
			}
			fmt.Fprintln(w, "OK")
		})
		run("metrics", func() error { return serve.HTTP(ctx, ml, mux) })
		running++
	}
	log.Info("podnet dns serving", "zone", ix.Zone(), "listen", pc.LocalAddr().String(), "upstreams", upstreams,
		"ttl", ix.TTL(), "pods", podMode.String(), "metrics", f.metrics)

	var first error
	if err := ix.Watch(ctx, client); err != nil {
		if ctx.Err() == nil {
			first = fmt.Errorf("watching the cluster: %w", err)
		}
		cancel()
	} else {
		log.Info("cluster synced", "names", ix.Names(), "serial", ix.Serial())
	}
	<-ctx.Done()
	for ; running > 0; running-- {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}
