package lab

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	listersv1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// lbController does what a cloud provider's service controller does for LoadBalancer Services:
// it gives each one an address from the lab's load-balancer range (--lb-cidr) and writes it to
// status.loadBalancer.ingress. The lab's router in LAB.external then routes that address to
// the nodes, as a cloud load balancer forwards to them.
type lbController struct {
	d        *Daemon
	pool     *net.IPNet
	services listersv1.ServiceLister
	queue    workqueue.TypedRateLimitingInterface[Key]
	log      *slog.Logger

	mu       sync.Mutex
	assigned map[Key]string // what this controller wrote, until the lister shows it
	failed   map[Key]string // why a Service has no address
}

func newLBController(d *Daemon) *lbController {
	return &lbController{d: d, pool: mustCIDR(d.cfg.LBCIDR), log: d.log.With("component", "lb-controller"),
		assigned: map[Key]string{}, failed: map[Key]string{},
		queue: workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[Key]())}
}

func (c *lbController) register(f informers.SharedInformerFactory) error {
	c.services = f.Core().V1().Services().Lister()
	h := func(o interface{}) {
		s, ok := unwrapTombstone(o).(*corev1.Service)
		if !ok {
			return
		}
		c.queue.Add(keyOfService(s))
		// An address a Service gave up may be what a waiting one asked for.
		c.mu.Lock()
		for k := range c.failed {
			c.queue.Add(k)
		}
		c.mu.Unlock()
	}
	_, err := f.Core().V1().Services().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: h, UpdateFunc: func(_, o interface{}) { h(o) }, DeleteFunc: h,
	})
	return err
}

func (c *lbController) run(ctx context.Context) {
	defer c.queue.ShutDown()
	go func() {
		for {
			key, quit := c.queue.Get()
			if quit {
				return
			}
			if err := c.sync(ctx, key); err != nil && ctx.Err() == nil {
				c.log.Warn("sync failed", "service", key.String(), "err", err)
				c.queue.AddRateLimited(key)
			} else {
				c.queue.Forget(key)
			}
			c.queue.Done(key)
		}
	}()
	<-ctx.Done()
}

// pendingReason says why a LoadBalancer Service has no address yet ("" when none is known).
func (c *lbController) pendingReason(k Key) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.failed[k]
}

// lbClaims maps every address a Service holds or asks for to that Service. Addresses already
// assigned come first (what this controller just wrote, then status), then requests
// (spec.loadBalancerIP, spec.externalIPs); among Services claiming the same address the oldest
// wins.
func lbClaims(svcs []*corev1.Service, assigned map[Key]string) map[string]Key {
	svcs = append([]*corev1.Service(nil), svcs...)
	sort.Slice(svcs, func(i, j int) bool {
		a, b := svcs[i], svcs[j]
		if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
			return a.CreationTimestamp.Before(&b.CreationTimestamp)
		}
		return keyOfService(a).String() < keyOfService(b).String()
	})
	claims := map[string]Key{}
	claim := func(ip string, k Key) {
		if p := net.ParseIP(ip).To4(); p != nil {
			if _, taken := claims[p.String()]; !taken {
				claims[p.String()] = k
			}
		}
	}
	for _, s := range svcs {
		if ip, ok := assigned[keyOfService(s)]; ok && s.Spec.Type == corev1.ServiceTypeLoadBalancer {
			claim(ip, keyOfService(s))
		}
	}
	for _, s := range svcs {
		if s.Spec.Type != corev1.ServiceTypeLoadBalancer {
			continue
		}
		for _, in := range s.Status.LoadBalancer.Ingress {
			claim(in.IP, keyOfService(s))
		}
	}
	for _, s := range svcs {
		for _, ip := range s.Spec.ExternalIPs {
			claim(ip, keyOfService(s))
		}
		if s.Spec.Type == corev1.ServiceTypeLoadBalancer && s.Spec.LoadBalancerIP != "" {
			claim(s.Spec.LoadBalancerIP, keyOfService(s))
		}
	}
	return claims
}

// pickLoadBalancerIP chooses svc's address from pool given every claim: the requested
// spec.loadBalancerIP when it is in the pool and no one else holds it, else the address svc
// already has, else the lowest free one.
func pickLoadBalancerIP(pool *net.IPNet, svc *corev1.Service, claims map[string]Key) (string, error) {
	me := keyOfService(svc)
	free := func(ip string) bool {
		k, taken := claims[ip]
		return !taken || k == me
	}
	ones, bits := pool.Mask.Size()
	base := ip4ToUint(pool.IP)
	first, last := base, base+uint32(1)<<(bits-ones)-1
	if bits-ones >= 2 {
		first, last = first+1, last-1 // not the network and broadcast addresses
	}
	usable := func(ip net.IP) bool {
		n := ip4ToUint(ip)
		return pool.Contains(ip) && n >= first && n <= last
	}
	if req := svc.Spec.LoadBalancerIP; req != "" {
		ip := net.ParseIP(req).To4()
		switch {
		case ip == nil || !usable(ip):
			return "", fmt.Errorf("spec.loadBalancerIP %s is not in the lab's load-balancer range %s (lab up --lb-cidr)", req, pool)
		case !free(ip.String()):
			return "", fmt.Errorf("spec.loadBalancerIP %s is already used by service %s", req, claims[ip.String()])
		}
		return ip.String(), nil
	}
	for _, in := range svc.Status.LoadBalancer.Ingress {
		if ip := net.ParseIP(in.IP).To4(); ip != nil && usable(ip) && free(ip.String()) {
			return ip.String(), nil
		}
	}
	for n := first; n <= last && n >= first; n++ {
		if ip := uintToIP4(n).String(); free(ip) {
			return ip, nil
		}
	}
	return "", fmt.Errorf("no address left in the lab's load-balancer range %s (lab up --lb-cidr)", pool)
}

func (c *lbController) sync(ctx context.Context, key Key) error {
	svc, err := c.services.Services(key.Namespace).Get(key.Name)
	if apierrors.IsNotFound(err) || (err == nil && svc.Spec.Type != corev1.ServiceTypeLoadBalancer) {
		c.mu.Lock()
		delete(c.assigned, key)
		delete(c.failed, key)
		c.mu.Unlock()
		if err != nil || len(svc.Status.LoadBalancer.Ingress) == 0 {
			return nil
		}
		return c.writeStatus(ctx, key, nil, nil)
	}
	if err != nil {
		return err
	}
	all, err := c.services.List(labels.Everything())
	if err != nil {
		return err
	}
	c.mu.Lock()
	assigned := make(map[Key]string, len(c.assigned))
	for k, v := range c.assigned {
		assigned[k] = v
	}
	c.mu.Unlock()
	ip, perr := pickLoadBalancerIP(c.pool, svc, lbClaims(all, assigned))
	var want []corev1.LoadBalancerIngress
	if perr == nil {
		want = []corev1.LoadBalancerIngress{{IP: ip, IPMode: ptrTo(corev1.LoadBalancerIPModeVIP)}}
	}
	c.mu.Lock()
	if perr != nil {
		if c.failed[key] != perr.Error() {
			c.log.Warn("no load-balancer address", "service", key.String(), "reason", perr)
		}
		c.failed[key] = perr.Error()
		delete(c.assigned, key)
	} else {
		delete(c.failed, key)
		c.assigned[key] = ip
	}
	c.mu.Unlock()
	if equality.Semantic.DeepEqual(svc.Status.LoadBalancer.Ingress, want) {
		return nil
	}
	return c.writeStatus(ctx, key, svc, want)
}

// writeStatus sets the Service's load-balancer ingress, through the status subresource.
func (c *lbController) writeStatus(ctx context.Context, key Key, decidedFor *corev1.Service, ingress []corev1.LoadBalancerIngress) error {
	cur, err := c.d.client.CoreV1().Services(key.Namespace).Get(ctx, key.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if equality.Semantic.DeepEqual(cur.Status.LoadBalancer.Ingress, ingress) {
		return nil
	}
	if decidedFor != nil && (cur.Spec.Type != decidedFor.Spec.Type || cur.Spec.LoadBalancerIP != decidedFor.Spec.LoadBalancerIP) {
		return nil // the Service changed since; its update event brings it back
	}
	cur.Status.LoadBalancer.Ingress = ingress
	if _, err := c.d.client.CoreV1().Services(key.Namespace).UpdateStatus(ctx, cur, metav1.UpdateOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	if len(ingress) > 0 {
		c.log.Info("load-balancer address assigned", "service", key.String(), "ip", ingress[0].IP)
	}
	return nil
}

func ptrTo[T any](v T) *T { return &v }
