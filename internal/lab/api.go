package lab

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// The daemon's API is HTTP over a unix socket in the lab's state directory; only root reaches it.
// Every answer is JSON; errors are {"error": "..."} with a 4xx/5xx status.

// Status is what `podnet lab status` shows.
type Status struct {
	Config Config       `json:"config"`
	Ready  bool         `json:"ready"`
	PID    int          `json:"pid"`
	Nodes  []NodeStatus `json:"nodes"`
	Pods   int          `json:"pods"`
	Agents []any        `json:"agents"`
	// External is the lab's external client, on the underlay outside the cluster.
	External ExternalStatus `json:"external"`
}

// ExternalStatus is where the external client is: its namespace and underlay address.
type ExternalStatus struct {
	Netns   string `json:"netns"`
	Address string `json:"address"`
}

// NodeStatus is one node's line in the lab status.
type NodeStatus struct {
	Name       string `json:"name"`
	Ready      bool   `json:"ready"`
	InternalIP string `json:"internalIP"`
	PodCIDR    string `json:"podCIDR"`
	Netns      string `json:"netns"`
	Pods       int    `json:"pods"`
}

// PodInfo is what `podnet exec` and `podnet logs` need to reach a pod.
type PodInfo struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Node      string `json:"node"`
	Phase     string `json:"phase"`
	IP        string `json:"ip"`
	Netns     string `json:"netns"`
	Log       string `json:"log"`
}

func (d *Daemon) serveAPI() (*http.Server, error) {
	_ = os.Remove(d.paths.Socket())
	l, err := net.Listen("unix", d.paths.Socket())
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", d.handleStatus)
	mux.HandleFunc("POST /v1/apply", d.handleApply)
	mux.HandleFunc("POST /v1/delete", d.handleDelete)
	mux.HandleFunc("GET /v1/get", d.handleGet)
	mux.HandleFunc("GET /v1/pod", d.handlePod)
	mux.HandleFunc("POST /v1/label", d.handleLabel)
	mux.HandleFunc("GET /v1/flows", d.handleFlows)
	mux.HandleFunc("POST /v1/restart-agents", func(w http.ResponseWriter, r *http.Request) {
		var nodes []string
		if n := r.URL.Query().Get("nodes"); n != "" {
			nodes = strings.Split(n, ",")
		}
		if err := d.RestartAgents(nodes); err != nil {
			writeErr(w, http.StatusBadRequest, err)
			return
		}
		writeJSON(w, d.agentStats())
	})
	mux.HandleFunc("POST /v1/shutdown", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]string{"status": "shutting down"})
		go d.stop()
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(l) }()
	return srv, nil
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, code int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
}

func (d *Daemon) handleStatus(w http.ResponseWriter, r *http.Request) {
	d.mu.Lock()
	ready := d.ready
	d.mu.Unlock()
	st := Status{Config: d.cfg, Ready: ready, PID: os.Getpid(), External: ExternalStatus{
		Netns: ExternalNetns(d.cfg.Name), Address: ExternalAddress(mustCIDR(d.cfg.UnderlayCIDR)).IP.String()}}
	nodes, err := d.client.CoreV1().Nodes().List(r.Context(), metav1.ListOptions{})
	if err != nil {
		writeErr(w, 500, err)
		return
	}
	pods, _ := d.client.CoreV1().Pods("").List(r.Context(), metav1.ListOptions{})
	perNode := map[string]int{}
	for _, p := range pods.Items {
		perNode[p.Spec.NodeName]++
	}
	st.Pods = len(pods.Items)
	for _, n := range nodes.Items {
		st.Nodes = append(st.Nodes, NodeStatus{Name: n.Name, Ready: nodeReady(&n), InternalIP: nodeInternalIP(&n),
			PodCIDR: n.Spec.PodCIDR, Netns: NodeNetns(d.cfg.Name, n.Name), Pods: perNode[n.Name]})
	}
	for _, a := range d.agentStats() {
		st.Agents = append(st.Agents, a)
	}
	writeJSON(w, st)
}

func (d *Daemon) handlePod(w http.ResponseWriter, r *http.Request) {
	ns, name := r.URL.Query().Get("namespace"), r.URL.Query().Get("name")
	pod, err := d.client.CoreV1().Pods(ns).Get(r.Context(), name, metav1.GetOptions{})
	if err != nil {
		writeErr(w, http.StatusNotFound, fmt.Errorf("pod %q not found in namespace %q", name, ns))
		return
	}
	writeJSON(w, PodInfo{Namespace: ns, Name: name, Node: pod.Spec.NodeName, Phase: string(pod.Status.Phase),
		IP: pod.Status.PodIP, Netns: PodNetns(d.cfg.Name, ns, name), Log: d.paths.PodDir(ns, name) + "/log"})
}

func (d *Daemon) handleApply(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<20))
	if err != nil {
		writeErr(w, 400, err)
		return
	}
	objs, err := decodeRequest(body, r.URL.Query().Get("source"))
	if err != nil {
		writeErr(w, 400, err)
		return
	}
	ctx := r.Context()
	res, err := d.apply(ctx, objs)
	if err != nil {
		writeErr(w, 400, err)
		return
	}
	if wait := r.URL.Query().Get("wait"); wait != "" {
		timeout, _ := time.ParseDuration(wait)
		if timeout <= 0 {
			timeout = 2 * time.Minute
		}
		wctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		if err := d.waitApplied(wctx, res); err != nil {
			writeErr(w, http.StatusGatewayTimeout, fmt.Errorf("%s\n%w", strings.Join(res.Lines, "\n"), err))
			return
		}
	}
	writeJSON(w, res)
}

func (d *Daemon) handleDelete(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var res *Result
	var err error
	if kind := q.Get("kind"); kind != "" {
		res, err = d.deleteNamed(r.Context(), kind, q.Get("namespace"), q.Get("name"))
	} else {
		body, rerr := io.ReadAll(io.LimitReader(r.Body, 64<<20))
		if rerr != nil {
			writeErr(w, 400, rerr)
			return
		}
		objs, derr := decodeRequest(body, q.Get("source"))
		if derr != nil {
			writeErr(w, 400, derr)
			return
		}
		res, err = d.deleteObjects(r.Context(), objs)
	}
	if err != nil {
		writeErr(w, http.StatusNotFound, err)
		return
	}
	if q.Get("wait") != "" {
		wctx, cancel := context.WithTimeout(r.Context(), 2*time.Minute)
		defer cancel()
		if err := d.waitDeleted(wctx, res); err != nil {
			writeErr(w, http.StatusGatewayTimeout, err)
			return
		}
	}
	writeJSON(w, res)
}

func (d *Daemon) handleGet(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	list, err := d.get(r.Context(), q.Get("kind"), q.Get("namespace"), q.Get("name"))
	if err != nil {
		code := 400
		if apierrors.IsNotFound(err) {
			code = 404
		}
		writeErr(w, code, err)
		return
	}
	writeJSON(w, list)
}

// deletePod starts a graceful deletion, as kube-apiserver does: the pod gets a deletion timestamp
// and its kubelet finishes the deletion once the pod's processes are gone. Until they are, the pod
// keeps its Ready condition, so its endpoints are terminating but still serving, as in a real
// cluster. A pod no node runs is removed at once.
func deletePod(ctx context.Context, c kubernetes.Interface, ns, name string) error {
	p, err := c.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if p.DeletionTimestamp != nil {
		return nil
	}
	if p.Spec.NodeName == "" {
		return c.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{})
	}
	now := metav1.Now()
	grace := int64(30)
	if p.Spec.TerminationGracePeriodSeconds != nil {
		grace = *p.Spec.TerminationGracePeriodSeconds
	}
	p.DeletionTimestamp = &now
	p.DeletionGracePeriodSeconds = &grace
	_, err = c.CoreV1().Pods(ns).Update(ctx, p, metav1.UpdateOptions{})
	return err
}

// Client talks to a lab daemon over its socket.
type Client struct {
	Lab  string
	http *http.Client
}

// NewClient returns a client for the named lab; it fails clearly when the lab does not exist or
// its daemon does not answer.
func NewClient(lab string) (*Client, error) {
	if _, err := LoadConfig(lab); err != nil {
		return nil, err
	}
	sock := PathsFor(lab).Socket()
	c := &Client{Lab: lab, http: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var dl net.Dialer
			return dl.DialContext(ctx, "unix", sock)
		},
	}}}
	return c, nil
}

// Stream sends a GET and calls line for each line of the answer until it ends, line returns
// an error, or ctx is done.
func (c *Client) Stream(ctx context.Context, path string, query url.Values, line func([]byte) error) error {
	u := "http://lab" + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		b, _ := io.ReadAll(resp.Body)
		var e struct{ Error string }
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return errors.New(e.Error)
		}
		return fmt.Errorf("lab daemon: %s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if err := line(sc.Bytes()); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	return sc.Err()
}

// Do sends one request and decodes the JSON answer into out (when out is not nil).
func (c *Client) Do(ctx context.Context, method, path string, query url.Values, body []byte, out any) error {
	u := "http://lab" + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, strings.NewReader(string(body)))
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var ne *net.OpError
		if errors.As(err, &ne) {
			return fmt.Errorf("lab %q: its daemon is not answering (%v); see %s, or `podnet lab down --name %s`", c.Lab, ne.Err, PathsFor(c.Lab).Log(), c.Lab)
		}
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		var e struct{ Error string }
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return errors.New(e.Error)
		}
		return fmt.Errorf("lab daemon: %s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}
