package workload

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// maxReply bounds how much of an HTTP reply body a probe reads.
const maxReply = 64 * 1024

// Prober probes workload servers. The zero Prober dials with a plain net.Dialer from
// the caller's network namespace.
type Prober struct {
	// Dial, when set, opens the connection ("tcp" or "udp" network). Set it to dial
	// from another network namespace, e.g. with a socket created in a pod's namespace.
	Dial func(ctx context.Context, network, address string) (net.Conn, error)
}

func (p Prober) dial(ctx context.Context, network, address string) (net.Conn, error) {
	if p.Dial != nil {
		return p.Dial(ctx, network, address)
	}
	var d net.Dialer
	return d.DialContext(ctx, network, address)
}

// ProbeTCP sends "GET /" over HTTP to addr ("host:port") with a new connection and
// decodes the workload server's Reply. It honours ctx's deadline and cancellation.
func ProbeTCP(ctx context.Context, addr string) (Reply, error) {
	return Prober{}.TCP(ctx, addr)
}

// ProbeUDP sends one datagram to addr ("host:port") and decodes the one datagram that
// answers it. It waits until ctx is done (give it a deadline: UDP has no other way to
// tell a lost datagram from a slow one); an ICMP port-unreachable answer fails it early.
func ProbeUDP(ctx context.Context, addr string) (Reply, error) {
	return Prober{}.UDP(ctx, addr)
}

// TCP is ProbeTCP through p's dialer.
func (p Prober) TCP(ctx context.Context, addr string) (Reply, error) {
	tr := &http.Transport{
		Proxy:             nil, // never route lab probes through a proxy from the environment
		DisableKeepAlives: true,
		DialContext:       p.dial,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/", nil)
	if err != nil {
		return Reply{}, fmt.Errorf("probe tcp %s: %w", addr, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return Reply{}, fmt.Errorf("probe tcp %s: %w", addr, unwrapURLError(err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxReply))
	if err != nil {
		return Reply{}, fmt.Errorf("probe tcp %s: reading reply: %w", addr, err)
	}
	if resp.StatusCode != http.StatusOK {
		return Reply{}, fmt.Errorf("probe tcp %s: HTTP %s: %s", addr, resp.Status, snippet(body))
	}
	return decodeReply("tcp", addr, body)
}

// UDP is ProbeUDP through p's dialer.
func (p Prober) UDP(ctx context.Context, addr string) (Reply, error) {
	conn, err := p.dial(ctx, "udp", addr)
	if err != nil {
		return Reply{}, fmt.Errorf("probe udp %s: %w", addr, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	// Unblock the read when ctx is cancelled before its deadline.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	if _, err := conn.Write([]byte("probe\n")); err != nil {
		return Reply{}, fmt.Errorf("probe udp %s: %w", addr, ctxErr(ctx, err))
	}
	buf := make([]byte, maxDatagram)
	n, err := conn.Read(buf)
	if err != nil {
		return Reply{}, fmt.Errorf("probe udp %s: %w", addr, ctxErr(ctx, err))
	}
	return decodeReply("udp", addr, buf[:n])
}

func decodeReply(proto, addr string, body []byte) (Reply, error) {
	var r Reply
	if err := json.Unmarshal(bytes.TrimSpace(body), &r); err != nil {
		return Reply{}, fmt.Errorf("probe %s %s: reply is not a workload reply (%v): %s", proto, addr, err, snippet(body))
	}
	return r, nil
}

// ctxErr prefers ctx's error (deadline exceeded, cancelled) over the I/O error it caused.
func ctxErr(ctx context.Context, err error) error {
	var ne net.Error
	if _, ok := ctx.Deadline(); ok && errors.As(err, &ne) && ne.Timeout() {
		// The socket deadline is ctx's deadline (or, once ctx is done, the past):
		// ctx is done or about to be, as its timer may fire just after the socket's.
		<-ctx.Done()
	}
	if ce := ctx.Err(); ce != nil {
		return ce
	}
	return err
}

// unwrapURLError drops the *url.Error wrapper, whose message repeats method and URL.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func snippet(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return fmt.Sprintf("%q", s)
}
