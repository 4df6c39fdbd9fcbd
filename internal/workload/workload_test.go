package workload

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestParsePorts(t *testing.T) {
	tests := []struct {
		spec    string
		want    []Port
		wantErr string
	}{
		{spec: "", want: nil},
		{spec: "  ", want: nil},
		{spec: "tcp:80", want: []Port{{"TCP", 80, ""}}},
		{spec: "tcp:80,udp:81,tcp:8080/http", want: []Port{{"TCP", 80, ""}, {"UDP", 81, ""}, {"TCP", 8080, "http"}}},
		{spec: " TCP:80 , Udp:53/dns ", want: []Port{{"TCP", 80, ""}, {"UDP", 53, "dns"}}},
		{spec: "8080", want: []Port{{"TCP", 8080, ""}}},
		{spec: "9090/metrics", want: []Port{{"TCP", 9090, "metrics"}}},
		{spec: "tcp:80,udp:80", want: []Port{{"TCP", 80, ""}, {"UDP", 80, ""}}},
		{spec: "tcp:80,sctp:81", wantErr: `port item 2 "sctp:81": protocol must be tcp or udp`},
		{spec: "tcp:70000", wantErr: `port item 1 "tcp:70000": port 70000 must be between 1 and 65535`},
		{spec: "tcp:0", wantErr: `port item 1 "tcp:0"`},
		{spec: "tcp:http", wantErr: `port item 1 "tcp:http": port "http" is not a number`},
		{spec: "tcp:80,,udp:81", wantErr: `port item 2 "": empty item`},
		{spec: "tcp:80/Bad_Name", wantErr: `port item 1 "tcp:80/Bad_Name": port name "Bad_Name"`},
		{spec: "tcp:80/averyveryverylongname", wantErr: `must be no more than 15 characters`},
		{spec: "tcp:80,udp:81,tcp:80/web", wantErr: `port item 3 "tcp:80/web": TCP port 80 already given by item 1`},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			got, err := ParsePorts(tt.spec)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParsePorts(%q) error = %v, want containing %q", tt.spec, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParsePorts(%q): %v", tt.spec, err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("ParsePorts(%q) = %v, want %v", tt.spec, got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Fatalf("ParsePorts(%q)[%d] = %+v, want %+v", tt.spec, i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestFormatPortsRoundTrip(t *testing.T) {
	ports := []Port{{"TCP", 80, ""}, {"UDP", 81, ""}, {"TCP", 8080, "http"}}
	s := FormatPorts(ports)
	if s != "tcp:80,udp:81,tcp:8080/http" {
		t.Fatalf("FormatPorts = %q", s)
	}
	back, err := ParsePorts(s)
	if err != nil {
		t.Fatal(err)
	}
	if FormatPorts(back) != s {
		t.Fatalf("round trip: %q != %q", FormatPorts(back), s)
	}
	if FormatPorts(nil) != "" {
		t.Fatalf("FormatPorts(nil) = %q", FormatPorts(nil))
	}
}

// freePort finds a port on 127.0.0.1 that is free for both TCP and UDP right now.
func freePort(t *testing.T) int {
	t.Helper()
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		l.Close()
		if err != nil {
			continue
		}
		u.Close()
		return port
	}
	t.Fatal("no free port")
	return 0
}

type server struct {
	cancel context.CancelFunc
	done   chan error
}

// start runs Serve and waits for ready; it fails the test if Serve returns first.
func start(t *testing.T, cfg Config) *server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &server{cancel: cancel, done: make(chan error, 1)}
	ready := make(chan struct{})
	go func() { s.done <- Serve(ctx, cfg, func() { close(ready) }) }()
	select {
	case <-ready:
	case err := <-s.done:
		cancel()
		t.Fatalf("Serve returned before ready: %v", err)
	case <-time.After(5 * time.Second):
		cancel()
		t.Fatal("Serve not ready after 5s")
	}
	t.Cleanup(func() { s.stop(t) })
	return s
}

func (s *server) stop(t *testing.T) error {
	t.Helper()
	s.cancel()
	select {
	case err, ok := <-s.done:
		if ok {
			close(s.done)
		}
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return within 5s of cancel")
		return nil
	}
}

func probeCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestServeAndProbe(t *testing.T) {
	tcpPort, udpPort, tcp2 := freePort(t), freePort(t), freePort(t)
	cfg := Config{
		Pod: "web-1", Namespace: "shop", Node: "node-2", PodIP: "10.244.2.7",
		Ports:  []Port{{"TCP", tcpPort, "http"}, {"udp", udpPort, ""}, {"TCP", tcp2, ""}},
		Listen: "127.0.0.1",
	}
	start(t, cfg)

	for _, port := range []int{tcpPort, tcp2} {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		r, err := ProbeTCP(probeCtx(t), addr)
		if err != nil {
			t.Fatalf("ProbeTCP(%s): %v", addr, err)
		}
		want := Reply{Pod: "web-1", Namespace: "shop", Node: "node-2", PodIP: "10.244.2.7", Port: port, Protocol: "TCP", ClientIP: "127.0.0.1"}
		checkReply(t, r, want)
	}

	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(udpPort))
	r, err := ProbeUDP(probeCtx(t), addr)
	if err != nil {
		t.Fatalf("ProbeUDP(%s): %v", addr, err)
	}
	checkReply(t, r, Reply{Pod: "web-1", Namespace: "shop", Node: "node-2", PodIP: "10.244.2.7", Port: udpPort, Protocol: "UDP", ClientIP: "127.0.0.1"})

	// The raw HTTP answer: JSON plus newline, and /healthz.
	resp, err := http.Get("http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(tcpPort)) + "/any/path")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(string(body), `{"pod":"web-1","namespace":"shop","node":"node-2","podIP":"10.244.2.7","port":`) || !strings.HasSuffix(string(body), "}\n") {
		t.Fatalf("GET /any/path = %d %q", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type = %q", ct)
	}
	resp, err = http.Get("http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(tcpPort)) + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "ok" {
		t.Fatalf("GET /healthz = %d %q", resp.StatusCode, body)
	}
}

func checkReply(t *testing.T, got, want Reply) {
	t.Helper()
	host, port, err := net.SplitHostPort(got.Client)
	if err != nil || host != got.ClientIP || port == "0" {
		t.Errorf("client %q does not carry clientIP %q and a port", got.Client, got.ClientIP)
	}
	got.Client = ""
	if got != want {
		t.Errorf("reply = %+v\nwant    %+v", got, want)
	}
}

func TestPodIPDefaultsToLocalAddress(t *testing.T) {
	tcpPort, udpPort := freePort(t), freePort(t)
	start(t, Config{Pod: "p", Ports: []Port{{"TCP", tcpPort, ""}, {"UDP", udpPort, ""}}, Listen: "127.0.0.1"})
	r, err := ProbeTCP(probeCtx(t), net.JoinHostPort("127.0.0.1", strconv.Itoa(tcpPort)))
	if err != nil {
		t.Fatal(err)
	}
	if r.PodIP != "127.0.0.1" {
		t.Errorf("TCP podIP = %q, want 127.0.0.1", r.PodIP)
	}
	r, err = ProbeUDP(probeCtx(t), net.JoinHostPort("127.0.0.1", strconv.Itoa(udpPort)))
	if err != nil {
		t.Fatal(err)
	}
	if r.PodIP != "127.0.0.1" {
		t.Errorf("UDP podIP = %q, want 127.0.0.1", r.PodIP)
	}
}

func TestBindConflict(t *testing.T) {
	free, busy := freePort(t), freePort(t)
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(busy)))
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Ports: []Port{{"TCP", free, ""}, {"UDP", free, ""}, {"TCP", busy, ""}}, Listen: "127.0.0.1"}
	readyCalled := false
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = Serve(ctx, cfg, func() { readyCalled = true })
	if err == nil {
		t.Fatal("Serve succeeded on a busy port")
	}
	if !strings.Contains(err.Error(), strconv.Itoa(busy)) {
		t.Errorf("error %q does not name port %d", err, busy)
	}
	if readyCalled {
		t.Error("ready called although a bind failed")
	}
	// The ports bound before the failure were released.
	l.Close()
	start(t, cfg)
}

func TestUDPBindConflict(t *testing.T) {
	busy := freePort(t)
	u, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(busy)))
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	err = Serve(context.Background(), Config{Ports: []Port{{"UDP", busy, ""}}, Listen: "127.0.0.1"}, nil)
	if err == nil || !strings.Contains(err.Error(), "udp") {
		t.Fatalf("Serve on busy UDP port: err = %v", err)
	}
}

func TestServeRejectsBadPorts(t *testing.T) {
	for _, p := range []Port{{"SCTP", 80, ""}, {"TCP", 0, ""}, {"UDP", 65536, ""}} {
		if err := Serve(context.Background(), Config{Ports: []Port{p}}, nil); err == nil {
			t.Errorf("Serve(%+v) succeeded", p)
		}
	}
}

func TestCancelShutsDown(t *testing.T) {
	tcpPort, udpPort := freePort(t), freePort(t)
	s := start(t, Config{Ports: []Port{{"TCP", tcpPort, ""}, {"UDP", udpPort, ""}}, Listen: "127.0.0.1"})
	tcpAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(tcpPort))
	udpAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(udpPort))
	if _, err := ProbeTCP(probeCtx(t), tcpAddr); err != nil {
		t.Fatal(err)
	}
	if err := s.stop(t); err != nil {
		t.Fatalf("Serve after cancel returned %v, want nil", err)
	}
	// Everything is closed: TCP refuses, and the ports can be bound again.
	if _, err := ProbeTCP(probeCtx(t), tcpAddr); err == nil {
		t.Fatal("TCP probe succeeded after shutdown")
	}
	l, err := net.Listen("tcp", tcpAddr)
	if err != nil {
		t.Fatalf("TCP port still bound after shutdown: %v", err)
	}
	l.Close()
	u, err := net.ListenPacket("udp", udpAddr)
	if err != nil {
		t.Fatalf("UDP port still bound after shutdown: %v", err)
	}
	u.Close()
}

func TestServeNoPortsWaits(t *testing.T) {
	s := start(t, Config{Pod: "idle"})
	select {
	case err := <-s.done:
		t.Fatalf("Serve with no ports returned early: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	if err := s.stop(t); err != nil {
		t.Fatal(err)
	}
}

func TestProbeUDPNoServer(t *testing.T) {
	port := freePort(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	begin := time.Now()
	_, err := ProbeUDP(ctx, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err == nil {
		t.Fatal("ProbeUDP to a closed port succeeded")
	}
	// On loopback the kernel answers with port unreachable; either way the probe must
	// not outlive its context.
	if time.Since(begin) > 2500*time.Millisecond {
		t.Fatalf("ProbeUDP took %v, longer than its context", time.Since(begin))
	}
}

func TestProbeUDPRespectsDeadline(t *testing.T) {
	// A UDP socket that never answers.
	u, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	begin := time.Now()
	_, err = ProbeUDP(ctx, u.LocalAddr().String())
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("ProbeUDP error = %v, want deadline exceeded", err)
	}
	if d := time.Since(begin); d > time.Second {
		t.Fatalf("ProbeUDP returned after %v", d)
	}

	// Cancellation without a deadline also ends the wait.
	ctx, cancel = context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	_, err = ProbeUDP(ctx, u.LocalAddr().String())
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("ProbeUDP error = %v, want canceled", err)
	}
}

func TestProbeTCPRejectsForeignServer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/" {
			w.Write([]byte("<html>hello</html>"))
			return
		}
		http.NotFound(w, r)
	})}
	go srv.Serve(l)
	defer srv.Close()
	_, err = ProbeTCP(probeCtx(t), l.Addr().String())
	if err == nil || !strings.Contains(err.Error(), "not a workload reply") {
		t.Fatalf("ProbeTCP on a foreign server: %v", err)
	}
}

func TestProberCustomDial(t *testing.T) {
	port := freePort(t)
	start(t, Config{Pod: "p", Ports: []Port{{"TCP", port, ""}, {"UDP", port, ""}}, Listen: "127.0.0.1"})
	var dialed []string
	p := Prober{Dial: func(ctx context.Context, network, address string) (net.Conn, error) {
		dialed = append(dialed, network+" "+address)
		var d net.Dialer
		return d.DialContext(ctx, network, address)
	}}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if _, err := p.TCP(probeCtx(t), addr); err != nil {
		t.Fatal(err)
	}
	if _, err := p.UDP(probeCtx(t), addr); err != nil {
		t.Fatal(err)
	}
	if strings.Join(dialed, ",") != "tcp "+addr+",udp "+addr {
		t.Fatalf("dialed %v", dialed)
	}
}
