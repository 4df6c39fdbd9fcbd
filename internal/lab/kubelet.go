package lab

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containernetworking/cni/libcni"
	cnitypes "github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	cniversion "github.com/containernetworking/cni/pkg/version"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	listersv1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"
	"k8s.io/client-go/util/workqueue"

	"github.com/podnet/podnet/internal/agent"
	"github.com/podnet/podnet/internal/cni"
	"github.com/podnet/podnet/internal/workload"
)

// Pod annotations kubelet turns into the CNI bandwidth capability.
const (
	AnnotationIngressBandwidth = "kubernetes.io/ingress-bandwidth"
	AnnotationEgressBandwidth  = "kubernetes.io/egress-bandwidth"
)

// kubelet does, for one lab node, what kubelet and the container runtime do for networking's sake:
// a network namespace per pod, the CNI plugin called through libcni with the node's conflist, the
// pod's processes started in that namespace, and the pod's status written back.
type kubelet struct {
	d       *Daemon
	node    string
	nodeIP  string
	nodeNs  string
	cni     *libcni.CNIConfig
	pods    listersv1.PodLister
	queue   workqueue.TypedRateLimitingInterface[string]
	log     *slog.Logger
	mu      sync.Mutex
	running map[string]*podRuntime // by namespace/name
}

// podRuntime is what the kubelet keeps about a pod it runs.
type podRuntime struct {
	uid        string
	netns      string
	ip         net.IP
	containers []*containerProc
	ready      bool
}

type containerProc struct {
	name     string
	pid      int
	restarts int32
	exited   bool
	exitCode int
	started  time.Time
	finished time.Time
	done     chan struct{} // closed when the process is gone
}

func newKubelet(d *Daemon, node, nodeIP string, pods listersv1.PodLister) *kubelet {
	k := &kubelet{
		d: d, node: node, nodeIP: nodeIP, nodeNs: NodeNetns(d.cfg.Name, node), pods: pods,
		queue:   workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]()),
		log:     d.log.With("kubelet", node),
		running: map[string]*podRuntime{},
	}
	k.cni = libcni.NewCNIConfigWithCacheDir(d.cniBinDirs, filepath.Join(d.paths.CNICache(), node), &cni.NodeExec{NetNS: NetnsPath(k.nodeNs)})
	return k
}

func (k *kubelet) handler() cache.ResourceEventHandler {
	enqueue := func(o interface{}) {
		if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
			o = d.Obj
		}
		p, ok := o.(*corev1.Pod)
		if !ok || p.Spec.NodeName != k.node {
			return
		}
		k.queue.Add(p.Namespace + "/" + p.Name)
	}
	return cache.ResourceEventHandlerFuncs{AddFunc: enqueue, UpdateFunc: func(_, o interface{}) { enqueue(o) }, DeleteFunc: enqueue}
}

func (k *kubelet) run(ctx context.Context, workers int) {
	defer k.queue.ShutDown()
	k.adopt(ctx)
	for i := 0; i < workers; i++ {
		go func() {
			for {
				key, quit := k.queue.Get()
				if quit {
					return
				}
				err := k.syncPod(ctx, key)
				if err != nil && ctx.Err() == nil {
					k.log.Warn("pod sync failed", "pod", key, "err", err)
					k.queue.AddRateLimited(key)
				} else {
					k.queue.Forget(key)
				}
				k.queue.Done(key)
			}
		}()
	}
	<-ctx.Done()
}

// conflist loads the CNI configuration the node agent wrote for this node.
func (k *kubelet) conflist() (*libcni.NetworkConfigList, error) {
	return libcni.ConfListFromFile(filepath.Join(k.d.paths.NodeDir(k.node), "cni", agent.ConflistName))
}

func (k *kubelet) runtimeConf(pod *corev1.Pod, uid, netnsName string) (*libcni.RuntimeConf, error) {
	rt := &libcni.RuntimeConf{
		ContainerID: uid,
		NetNS:       NetnsPath(netnsName),
		IfName:      "eth0",
		Args: [][2]string{
			{"IgnoreUnknown", "1"},
			{"K8S_POD_NAMESPACE", pod.Namespace},
			{"K8S_POD_NAME", pod.Name},
			{"K8S_POD_INFRA_CONTAINER_ID", uid},
			{"K8S_POD_UID", uid},
		},
		CapabilityArgs: map[string]interface{}{},
	}
	bw := map[string]interface{}{}
	for ann, dir := range map[string]string{AnnotationIngressBandwidth: "ingress", AnnotationEgressBandwidth: "egress"} {
		v, ok := pod.Annotations[ann]
		if !ok {
			continue
		}
		q, err := resource.ParseQuantity(v)
		if err != nil || q.Value() <= 0 {
			return nil, fmt.Errorf("annotation %s: %q is not a positive bandwidth (e.g. 10M)", ann, v)
		}
		// As kubelet does: the rate in bits per second, and a burst that does not limit.
		bw[dir+"Rate"] = q.Value()
		bw[dir+"Burst"] = math.MaxInt32
	}
	if len(bw) > 0 {
		rt.CapabilityArgs["bandwidth"] = bw
	}
	return rt, nil
}

// syncPod brings one pod's runtime in line with its object.
func (k *kubelet) syncPod(ctx context.Context, key string) error {
	ns, name, _ := strings.Cut(key, "/")
	pod, err := k.pods.Pods(ns).Get(name)
	if apierrors.IsNotFound(err) {
		pod = nil
	} else if err != nil {
		return err
	}
	k.mu.Lock()
	rt := k.running[key]
	k.mu.Unlock()

	switch {
	case pod == nil || pod.Spec.NodeName != k.node:
		if rt != nil {
			return k.teardown(ctx, key, nil)
		}
		return nil
	case pod.DeletionTimestamp != nil:
		return k.teardown(ctx, key, pod)
	case rt != nil && rt.uid != string(pod.UID):
		// Same name, new pod: the old one goes first.
		if err := k.teardown(ctx, key, nil); err != nil {
			return err
		}
		rt = nil
	}
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		if rt == nil {
			return nil
		}
	}
	if rt == nil {
		if rt, err = k.startPod(ctx, pod); err != nil {
			return err
		}
	}
	return k.updateStatus(ctx, pod, rt)
}

func (k *kubelet) startPod(ctx context.Context, pod *corev1.Pod) (*podRuntime, error) {
	key := pod.Namespace + "/" + pod.Name
	netnsName := PodNetns(k.d.cfg.Name, pod.Namespace, pod.Name)
	uid := string(pod.UID)
	list, err := k.conflist()
	if err != nil {
		return nil, fmt.Errorf("node %s has no CNI configuration yet: %w", k.node, err)
	}
	rtc, err := k.runtimeConf(pod, uid, netnsName)
	if err != nil {
		return nil, err
	}
	// A namespace left from an earlier attempt is removed first, with its attachment.
	if netnsExists(netnsName) {
		_ = k.cni.DelNetworkList(ctx, list, rtc)
		if err := delNetns(netnsName); err != nil {
			return nil, err
		}
	}
	if err := addNetns(netnsName); err != nil {
		return nil, err
	}
	res, err := k.cni.AddNetworkList(ctx, list, rtc)
	if err != nil {
		_ = k.cni.DelNetworkList(ctx, list, rtc)
		_ = delNetns(netnsName)
		return nil, fmt.Errorf("CNI ADD: %w", err)
	}
	r100, err := types100.NewResultFromResult(res)
	if err != nil || len(r100.IPs) == 0 {
		_ = k.cni.DelNetworkList(ctx, list, rtc)
		_ = delNetns(netnsName)
		return nil, fmt.Errorf("CNI ADD returned no IP (%v)", err)
	}
	rt := &podRuntime{uid: uid, netns: netnsName, ip: r100.IPs[0].Address.IP}
	if err := k.writeEtc(pod, rt); err != nil {
		return nil, err
	}
	for i := range pod.Spec.Containers {
		cp, err := k.startContainer(pod, rt, &pod.Spec.Containers[i], 0)
		if err != nil {
			k.killAll(rt, 0)
			_ = k.cni.DelNetworkList(ctx, list, rtc)
			_ = delNetns(netnsName)
			return nil, err
		}
		rt.containers = append(rt.containers, cp)
	}
	k.mu.Lock()
	k.running[key] = rt
	k.mu.Unlock()
	k.saveRuntime(pod, rt)
	k.log.Info("pod started", "pod", key, "ip", rt.ip)
	return rt, nil
}

// writeEtc writes the files `ip netns exec` bind-mounts over /etc for the pod: resolv.conf
// (cluster DNS, search path, ndots:5, as kubelet writes for dnsPolicy ClusterFirst) and hosts.
func (k *kubelet) writeEtc(pod *corev1.Pod, rt *podRuntime) error {
	dir := filepath.Join(etcNetnsDir, rt.netns)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	dom := k.d.cfg.Domain
	resolv := fmt.Sprintf("search %s.svc.%s svc.%s %s\nnameserver %s\noptions ndots:5\n", pod.Namespace, dom, dom, dom, k.d.dnsIP())
	if pod.Spec.DNSPolicy == corev1.DNSDefault || pod.Spec.DNSPolicy == corev1.DNSNone {
		resolv = ""
		if pod.Spec.DNSPolicy == corev1.DNSDefault {
			if b, err := os.ReadFile("/etc/resolv.conf"); err == nil {
				resolv = string(b)
			}
		}
	}
	if c := pod.Spec.DNSConfig; c != nil {
		for _, s := range c.Nameservers {
			resolv += "nameserver " + s + "\n"
		}
		if len(c.Searches) > 0 {
			resolv += "search " + strings.Join(c.Searches, " ") + "\n"
		}
	}
	hostname := pod.Name
	if pod.Spec.Hostname != "" {
		hostname = pod.Spec.Hostname
	}
	hosts := fmt.Sprintf("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n%s\t%s\n", rt.ip, hostname)
	if err := os.WriteFile(filepath.Join(dir, "resolv.conf"), []byte(resolv), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "hosts"), []byte(hosts), 0o644)
}

// containerArgv is what runs for a container: its command and args, or the built-in workload
// server serving its declared ports.
func (k *kubelet) containerArgv(pod *corev1.Pod, c *corev1.Container, ip net.IP) []string {
	if len(c.Command) > 0 {
		return append(append([]string{}, c.Command...), c.Args...)
	}
	var ports []workload.Port
	for _, p := range c.Ports {
		ports = append(ports, workload.Port{Protocol: string(p.Protocol), Port: int(p.ContainerPort), Name: p.Name})
	}
	return []string{k.d.selfExe, "workload", "--pod", pod.Name, "--namespace", pod.Namespace,
		"--node", k.node, "--pod-ip", ip.String(), "--ports", workload.FormatPorts(ports)}
}

func (k *kubelet) startContainer(pod *corev1.Pod, rt *podRuntime, c *corev1.Container, restarts int32) (*containerProc, error) {
	dir := k.d.paths.PodDir(pod.Namespace, pod.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	logf, err := os.OpenFile(filepath.Join(dir, "log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	argv := k.containerArgv(pod, c, rt.ip)
	cmd := exec.Command("ip", append([]string{"netns", "exec", rt.netns}, argv...)...)
	hostname := pod.Name
	if pod.Spec.Hostname != "" {
		hostname = pod.Spec.Hostname
	}
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=/root", "HOSTNAME=" + hostname, "LANG=C.UTF-8"}
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			cmd.Env = append(cmd.Env, e.Name+"="+e.Value)
		}
	}
	cmd.Dir = dir
	if c.WorkingDir != "" {
		cmd.Dir = c.WorkingDir
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("container %s: start %q: %w", c.Name, argv[0], err)
	}
	cp := &containerProc{name: c.Name, pid: cmd.Process.Pid, restarts: restarts, started: time.Now(), done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		}
		k.containerExited(pod.Namespace+"/"+pod.Name, rt, cp, code)
	}()
	return cp, nil
}

// containerExited records an exit and applies the restart policy.
func (k *kubelet) containerExited(key string, rt *podRuntime, cp *containerProc, code int) {
	k.mu.Lock()
	cp.exited, cp.exitCode, cp.finished = true, code, time.Now()
	close(cp.done)
	current := k.running[key] == rt
	k.mu.Unlock()
	if !current {
		return
	}
	k.log.Info("container exited", "pod", key, "container", cp.name, "code", code)
	k.queue.Add(key)
}

// maybeRestart restarts exited containers the pod's restartPolicy says to restart, with backoff.
func (k *kubelet) maybeRestart(pod *corev1.Pod, rt *podRuntime) {
	for i, cp := range rt.containers {
		k.mu.Lock()
		exited, code, restarts, finished := cp.exited, cp.exitCode, cp.restarts, cp.finished
		k.mu.Unlock()
		if !exited {
			continue
		}
		policy := pod.Spec.RestartPolicy
		if policy == corev1.RestartPolicyNever || (policy == corev1.RestartPolicyOnFailure && code == 0) {
			continue
		}
		backoff := time.Duration(1<<min(restarts, 5)) * time.Second
		if wait := time.Until(finished.Add(backoff)); wait > 0 {
			k.queue.AddAfter(pod.Namespace+"/"+pod.Name, wait)
			continue
		}
		var spec *corev1.Container
		for j := range pod.Spec.Containers {
			if pod.Spec.Containers[j].Name == cp.name {
				spec = &pod.Spec.Containers[j]
			}
		}
		if spec == nil {
			continue
		}
		ncp, err := k.startContainer(pod, rt, spec, restarts+1)
		if err != nil {
			k.log.Warn("restart failed", "pod", pod.Name, "container", cp.name, "err", err)
			continue
		}
		k.mu.Lock()
		rt.containers[i] = ncp
		k.mu.Unlock()
		k.saveRuntime(pod, rt)
	}
}

// listening reports whether every declared port of the container has a socket bound in the pod's
// namespace, read from /proc/PID/net (which shows the sockets of the namespace PID is in).
func listening(pid int, c *corev1.Container) bool {
	for _, p := range c.Ports {
		file := "tcp"
		if p.Protocol == corev1.ProtocolUDP {
			file = "udp"
		} else if p.Protocol == corev1.ProtocolSCTP {
			continue
		}
		if !procHasPort(pid, file, int(p.ContainerPort)) && !procHasPort(pid, file+"6", int(p.ContainerPort)) {
			return false
		}
	}
	return true
}

func procHasPort(pid int, file string, port int) bool {
	f, err := os.Open(fmt.Sprintf("/proc/%d/net/%s", pid, file))
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	want := fmt.Sprintf(":%04X", port)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 4 || !strings.HasSuffix(fields[1], want) {
			continue
		}
		// TCP: only LISTEN (0A) counts; UDP: a bound socket (07) does.
		if (strings.HasPrefix(file, "tcp") && fields[3] == "0A") || (strings.HasPrefix(file, "udp") && fields[3] == "07") {
			return true
		}
	}
	return false
}

// updateStatus writes phase, IPs, conditions and container statuses when they changed.
func (k *kubelet) updateStatus(ctx context.Context, pod *corev1.Pod, rt *podRuntime) error {
	k.maybeRestart(pod, rt)
	k.mu.Lock()
	statuses := make([]corev1.ContainerStatus, 0, len(rt.containers))
	allReady, allExited, anyFailed := true, true, false
	restartable := pod.Spec.RestartPolicy != corev1.RestartPolicyNever
	for _, cp := range rt.containers {
		var spec *corev1.Container
		for j := range pod.Spec.Containers {
			if pod.Spec.Containers[j].Name == cp.name {
				spec = &pod.Spec.Containers[j]
			}
		}
		st := corev1.ContainerStatus{Name: cp.name, RestartCount: cp.restarts, ContainerID: fmt.Sprintf("podnet://%d", cp.pid)}
		if spec != nil {
			st.Image = spec.Image
		}
		if cp.exited {
			st.State.Terminated = &corev1.ContainerStateTerminated{ExitCode: int32(cp.exitCode),
				StartedAt: metav1.NewTime(cp.started), FinishedAt: metav1.NewTime(cp.finished)}
			if cp.exitCode != 0 {
				anyFailed = true
				st.State.Terminated.Reason = "Error"
			} else {
				st.State.Terminated.Reason = "Completed"
			}
			if pod.Spec.RestartPolicy == corev1.RestartPolicyAlways || (pod.Spec.RestartPolicy == corev1.RestartPolicyOnFailure && cp.exitCode != 0) {
				st.State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}
				allExited = false
			}
			allReady = false
		} else {
			allExited = false
			started := true
			st.Started = &started
			st.State.Running = &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(cp.started)}
			st.Ready = spec != nil && listening(cp.pid, spec)
			allReady = allReady && st.Ready
		}
		statuses = append(statuses, st)
	}
	k.mu.Unlock()
	_ = restartable

	phase := corev1.PodRunning
	if allExited {
		phase = corev1.PodSucceeded
		if anyFailed {
			phase = corev1.PodFailed
		}
		allReady = false
	}
	if !allReady && !allExited {
		// Not listening yet: look again shortly.
		k.queue.AddAfter(pod.Namespace+"/"+pod.Name, 200*time.Millisecond)
	}
	readyStatus := corev1.ConditionFalse
	if allReady {
		readyStatus = corev1.ConditionTrue
	}
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := k.d.client.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if string(cur.UID) != rt.uid || cur.DeletionTimestamp != nil {
			return nil
		}
		st := cur.Status.DeepCopy()
		st.Phase = phase
		st.PodIP = rt.ip.String()
		st.PodIPs = []corev1.PodIP{{IP: rt.ip.String()}}
		st.HostIP = k.nodeIP
		st.HostIPs = []corev1.HostIP{{IP: k.nodeIP}}
		if st.StartTime == nil {
			now := metav1.Now()
			st.StartTime = &now
		}
		setPodCondition(st, corev1.PodScheduled, corev1.ConditionTrue)
		setPodCondition(st, corev1.PodInitialized, corev1.ConditionTrue)
		setPodCondition(st, corev1.ContainersReady, readyStatus)
		setPodCondition(st, corev1.PodReady, readyStatus)
		st.ContainerStatuses = statuses
		if podStatusEqual(&cur.Status, st) {
			return nil
		}
		cur.Status = *st
		_, err = k.d.client.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, cur, metav1.UpdateOptions{})
		return err
	})
	return err
}

func setPodCondition(st *corev1.PodStatus, t corev1.PodConditionType, s corev1.ConditionStatus) {
	for i := range st.Conditions {
		if st.Conditions[i].Type == t {
			if st.Conditions[i].Status != s {
				st.Conditions[i].Status = s
				st.Conditions[i].LastTransitionTime = metav1.Now()
			}
			return
		}
	}
	st.Conditions = append(st.Conditions, corev1.PodCondition{Type: t, Status: s, LastTransitionTime: metav1.Now()})
}

// podStatusEqual compares what the kubelet writes, ignoring timestamps it does not change.
func podStatusEqual(a, b *corev1.PodStatus) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

// killAll stops every process of the pod: SIGTERM to each process group, SIGKILL after grace.
func (k *kubelet) killAll(rt *podRuntime, grace time.Duration) {
	k.mu.Lock()
	procs := append([]*containerProc(nil), rt.containers...)
	k.mu.Unlock()
	for _, cp := range procs {
		_ = syscall.Kill(-cp.pid, syscall.SIGTERM)
	}
	deadline := time.After(grace)
	for _, cp := range procs {
		select {
		case <-cp.done:
		case <-deadline:
		}
	}
	for _, cp := range procs {
		_ = syscall.Kill(-cp.pid, syscall.SIGKILL)
		select {
		case <-cp.done:
		case <-time.After(2 * time.Second):
		}
	}
}

// teardown stops the pod's processes, detaches it from the network, removes its namespace and,
// when the pod object is being deleted, finishes the deletion.
func (k *kubelet) teardown(ctx context.Context, key string, pod *corev1.Pod) error {
	k.mu.Lock()
	rt := k.running[key]
	k.mu.Unlock()
	ns, name, _ := strings.Cut(key, "/")
	if rt != nil {
		grace := 30 * time.Second
		if pod != nil && pod.DeletionGracePeriodSeconds != nil {
			grace = time.Duration(*pod.DeletionGracePeriodSeconds) * time.Second
		}
		k.killAll(rt, min(grace, 10*time.Second))
		if pod != nil && pod.DeletionTimestamp != nil {
			k.markStopped(ctx, ns, name, rt.uid)
		}
		if list, err := k.conflist(); err == nil {
			rtc, _ := k.runtimeConf(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}, rt.uid, rt.netns)
			if err := k.cni.DelNetworkList(ctx, list, rtc); err != nil {
				k.log.Warn("CNI DEL failed", "pod", key, "err", err)
			}
		}
		if err := delNetns(rt.netns); err != nil {
			return err
		}
		_ = os.RemoveAll(filepath.Join(etcNetnsDir, rt.netns))
		k.mu.Lock()
		delete(k.running, key)
		k.mu.Unlock()
		k.log.Info("pod stopped", "pod", key)
	}
	_ = os.RemoveAll(k.d.paths.PodDir(ns, name))
	if pod != nil && pod.DeletionTimestamp != nil {
		zero := int64(0)
		err := k.d.client.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
		if err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	return nil
}

// markStopped reports a deleted pod's containers as stopped and the pod not Ready, as kubelet
// does once a terminating pod's containers exit: its endpoints stop serving before they go.
func (k *kubelet) markStopped(ctx context.Context, ns, name, uid string) {
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := k.d.client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil || string(cur.UID) != uid {
			return nil
		}
		st := cur.Status.DeepCopy()
		setPodCondition(st, corev1.ContainersReady, corev1.ConditionFalse)
		setPodCondition(st, corev1.PodReady, corev1.ConditionFalse)
		for i := range st.ContainerStatuses {
			st.ContainerStatuses[i].Ready = false
		}
		if podStatusEqual(&cur.Status, st) {
			return nil
		}
		cur.Status = *st
		_, err = k.d.client.CoreV1().Pods(ns).UpdateStatus(ctx, cur, metav1.UpdateOptions{})
		return err
	})
	if err != nil && !apierrors.IsNotFound(err) {
		k.log.Warn("pod status", "pod", ns+"/"+name, "err", err)
	}
}

// savedRuntime is what a restarted daemon needs to adopt a running pod.
type savedRuntime struct {
	UID        string         `json:"uid"`
	Netns      string         `json:"netns"`
	IP         string         `json:"ip"`
	Containers map[string]int `json:"pids"`
}

func (k *kubelet) saveRuntime(pod *corev1.Pod, rt *podRuntime) {
	k.mu.Lock()
	s := savedRuntime{UID: rt.uid, Netns: rt.netns, IP: rt.ip.String(), Containers: map[string]int{}}
	for _, c := range rt.containers {
		s.Containers[c.name] = c.pid
	}
	k.mu.Unlock()
	b, _ := json.Marshal(s)
	_ = os.WriteFile(filepath.Join(k.d.paths.PodDir(pod.Namespace, pod.Name), "runtime.json"), b, 0o644)
}

// adopt takes over the pods a previous daemon started whose processes still run; the rest are
// started afresh by the normal sync. It also garbage-collects CNI attachments of pods that are gone.
func (k *kubelet) adopt(ctx context.Context) {
	pods, _ := k.pods.List(labels.Everything())
	var valid []cnitypes.GCAttachment
	for _, pod := range pods {
		if pod.Spec.NodeName != k.node {
			continue
		}
		valid = append(valid, cnitypes.GCAttachment{ContainerID: string(pod.UID), IfName: "eth0"})
		b, err := os.ReadFile(filepath.Join(k.d.paths.PodDir(pod.Namespace, pod.Name), "runtime.json"))
		if err != nil {
			continue
		}
		var s savedRuntime
		if json.Unmarshal(b, &s) != nil || s.UID != string(pod.UID) || !netnsExists(s.Netns) {
			continue
		}
		rt := &podRuntime{uid: s.UID, netns: s.Netns, ip: net.ParseIP(s.IP)}
		names := make([]string, 0, len(s.Containers))
		for n := range s.Containers {
			names = append(names, n)
		}
		sort.Strings(names)
		alive := true
		for _, n := range names {
			pid := s.Containers[n]
			if syscall.Kill(pid, 0) != nil {
				alive = false
			}
			cp := &containerProc{name: n, pid: pid, started: time.Now(), done: make(chan struct{})}
			rt.containers = append(rt.containers, cp)
		}
		if !alive {
			k.killAll(rt, 0)
			continue
		}
		key := pod.Namespace + "/" + pod.Name
		for _, cp := range rt.containers {
			go k.watchAdopted(ctx, key, rt, cp)
		}
		k.mu.Lock()
		k.running[key] = rt
		k.mu.Unlock()
		k.log.Info("pod adopted", "pod", key, "ip", rt.ip)
	}
	list, err := k.conflist()
	if err != nil {
		return
	}
	// libcni DELs every cached attachment that is no longer valid, then (1.1.0 lists) asks each
	// plugin to GC. A list held at 1.0.0 for a chained plugin still gets podnet-cni's own GC,
	// which also reclaims addresses of ADDs that crashed before they were cached.
	if err := k.cni.GCNetworkList(ctx, list, &libcni.GCArgs{ValidAttachments: valid}); err != nil {
		k.log.Warn("CNI GC failed", "err", err)
	}
	if ok, _ := cniversion.GreaterThanOrEqualTo(list.CNIVersion, "1.1.0"); !ok && len(list.Plugins) > 0 {
		own, err := libcni.ConfListFromBytes([]byte(fmt.Sprintf(`{"cniVersion":"1.1.0","name":%q,"plugins":[%s]}`, list.Name, list.Plugins[0].Bytes)))
		if err == nil {
			err = k.cni.GCNetworkList(ctx, own, &libcni.GCArgs{ValidAttachments: valid})
		}
		if err != nil {
			k.log.Warn("podnet-cni GC failed", "err", err)
		}
	}
}

// watchAdopted polls a process this daemon did not start (it cannot wait for it).
func (k *kubelet) watchAdopted(ctx context.Context, key string, rt *podRuntime, cp *containerProc) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-cp.done:
			return
		case <-time.After(time.Second):
		}
		if err := syscall.Kill(cp.pid, 0); err != nil {
			k.containerExited(key, rt, cp, -1)
			return
		}
	}
}

// podIP reports the pod's IP as the kubelet knows it.
func (k *kubelet) podIP(key string) string {
	k.mu.Lock()
	defer k.mu.Unlock()
	if rt := k.running[key]; rt != nil {
		return rt.ip.String()
	}
	return ""
}
