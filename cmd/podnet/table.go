package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// age prints a duration the way kubectl does: 45s, 12m, 3h, 2d.
func age(t metav1.Time) string {
	if t.IsZero() {
		return "<unknown>"
	}
	d := time.Since(t.Time)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}

func selectorString(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, k+"="+m[k])
	}
	return strings.Join(parts, ",")
}

// printTable prints a List the daemon returned, with kubectl's columns for its kind.
func printTable(w io.Writer, kind string, raw []byte, wide, allNS bool) error {
	var list struct {
		Items []json.RawMessage `json:"items"`
	}
	if err := json.Unmarshal(raw, &list); err != nil {
		return err
	}
	if len(list.Items) == 0 {
		fmt.Fprintln(w, "No resources found.")
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
	defer tw.Flush()
	row := func(ns string, cols ...string) {
		if allNS {
			cols = append([]string{ns}, cols...)
		}
		fmt.Fprintln(tw, strings.Join(cols, "\t"))
	}
	header := func(cols ...string) {
		if allNS {
			cols = append([]string{"NAMESPACE"}, cols...)
		}
		fmt.Fprintln(tw, strings.Join(cols, "\t"))
	}
	switch kind {
	case "Node":
		allNS = false
		h := []string{"NAME", "STATUS", "ROLES", "AGE", "VERSION"}
		if wide {
			h = append(h, "INTERNAL-IP", "POD-CIDR")
		}
		header(h...)
		for _, it := range list.Items {
			var n corev1.Node
			if err := json.Unmarshal(it, &n); err != nil {
				return err
			}
			status := "NotReady"
			for _, c := range n.Status.Conditions {
				if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
					status = "Ready"
				}
			}
			cols := []string{n.Name, status, "<none>", age(n.CreationTimestamp), n.Status.NodeInfo.KubeletVersion}
			if wide {
				ip := ""
				for _, a := range n.Status.Addresses {
					if a.Type == corev1.NodeInternalIP {
						ip = a.Address
					}
				}
				cols = append(cols, ip, n.Spec.PodCIDR)
			}
			row("", cols...)
		}
	case "Namespace":
		allNS = false
		header("NAME", "STATUS", "AGE")
		for _, it := range list.Items {
			var n corev1.Namespace
			if err := json.Unmarshal(it, &n); err != nil {
				return err
			}
			row("", n.Name, string(n.Status.Phase), age(n.CreationTimestamp))
		}
	case "Pod":
		h := []string{"NAME", "READY", "STATUS", "RESTARTS", "AGE"}
		if wide {
			h = append(h, "IP", "NODE")
		}
		header(h...)
		for _, it := range list.Items {
			var p corev1.Pod
			if err := json.Unmarshal(it, &p); err != nil {
				return err
			}
			ready, restarts := 0, int32(0)
			status := string(p.Status.Phase)
			for _, cs := range p.Status.ContainerStatuses {
				if cs.Ready {
					ready++
				}
				restarts += cs.RestartCount
				if cs.State.Waiting != nil && cs.State.Waiting.Reason != "" {
					status = cs.State.Waiting.Reason
				}
			}
			if p.DeletionTimestamp != nil {
				status = "Terminating"
			}
			cols := []string{p.Name, fmt.Sprintf("%d/%d", ready, len(p.Spec.Containers)), status, fmt.Sprint(restarts), age(p.CreationTimestamp)}
			if wide {
				cols = append(cols, orNone(p.Status.PodIP), orNone(p.Spec.NodeName))
			}
			row(p.Namespace, cols...)
		}
	case "Service":
		h := []string{"NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"}
		if wide {
			h = append(h, "SELECTOR")
		}
		header(h...)
		for _, it := range list.Items {
			var s corev1.Service
			if err := json.Unmarshal(it, &s); err != nil {
				return err
			}
			cols := []string{s.Name, string(s.Spec.Type), orNone(s.Spec.ClusterIP), serviceExternalIP(&s, wide), servicePorts(&s), age(s.CreationTimestamp)}
			if wide {
				cols = append(cols, orNone(selectorString(s.Spec.Selector)))
			}
			row(s.Namespace, cols...)
		}
	case "EndpointSlice":
		header("NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE")
		for _, it := range list.Items {
			var e discoveryv1.EndpointSlice
			if err := json.Unmarshal(it, &e); err != nil {
				return err
			}
			row(e.Namespace, e.Name, string(e.AddressType), sliceEndpointPorts(e.Ports), sliceEndpoints(e.Endpoints), age(e.CreationTimestamp))
		}
	case "NetworkPolicy":
		header("NAME", "POD-SELECTOR", "AGE")
		for _, it := range list.Items {
			var np networkingv1.NetworkPolicy
			if err := json.Unmarshal(it, &np); err != nil {
				return err
			}
			row(np.Namespace, np.Name, orNone(metav1.FormatLabelSelector(&np.Spec.PodSelector)), age(np.CreationTimestamp))
		}
	case "Deployment":
		header("NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE")
		for _, it := range list.Items {
			var d appsv1.Deployment
			if err := json.Unmarshal(it, &d); err != nil {
				return err
			}
			want := int32(1)
			if d.Spec.Replicas != nil {
				want = *d.Spec.Replicas
			}
			row(d.Namespace, d.Name, fmt.Sprintf("%d/%d", d.Status.ReadyReplicas, want), fmt.Sprint(d.Status.UpdatedReplicas), fmt.Sprint(d.Status.AvailableReplicas), age(d.CreationTimestamp))
		}
	case "StatefulSet":
		header("NAME", "READY", "AGE")
		for _, it := range list.Items {
			var s appsv1.StatefulSet
			if err := json.Unmarshal(it, &s); err != nil {
				return err
			}
			want := int32(1)
			if s.Spec.Replicas != nil {
				want = *s.Spec.Replicas
			}
			row(s.Namespace, s.Name, fmt.Sprintf("%d/%d", s.Status.ReadyReplicas, want), age(s.CreationTimestamp))
		}
	default:
		return fmt.Errorf("no table format for %s; use -o yaml", kind)
	}
	return nil
}

// servicePorts is kubectl's PORT(S) column: "80/TCP", "80:30080/TCP,53:31053/UDP".
func servicePorts(s *corev1.Service) string {
	var ports []string
	for _, p := range s.Spec.Ports {
		ps := fmt.Sprintf("%d", p.Port)
		if p.NodePort != 0 {
			ps += fmt.Sprintf(":%d", p.NodePort)
		}
		ports = append(ports, ps+"/"+string(p.Protocol))
	}
	return orNone(strings.Join(ports, ","))
}

// loadBalancerWidth is where kubectl cuts the load-balancer addresses short without -o wide.
const loadBalancerWidth = 16

// serviceExternalIP is kubectl's EXTERNAL-IP column: load-balancer ingress addresses, then
// externalIPs; "<pending>" for a LoadBalancer without an address; the name of an ExternalName.
func serviceExternalIP(s *corev1.Service, wide bool) string {
	switch s.Spec.Type {
	case corev1.ServiceTypeClusterIP, corev1.ServiceTypeNodePort, "":
		return orNone(strings.Join(s.Spec.ExternalIPs, ","))
	case corev1.ServiceTypeExternalName:
		return s.Spec.ExternalName
	case corev1.ServiceTypeLoadBalancer:
		var lb []string
		for _, in := range s.Status.LoadBalancer.Ingress {
			if in.IP != "" {
				lb = append(lb, in.IP)
			} else if in.Hostname != "" {
				lb = append(lb, in.Hostname)
			}
		}
		r := strings.Join(lb, ",")
		if !wide && len(r) > loadBalancerWidth {
			r = r[:loadBalancerWidth-3] + "..."
		}
		all := []string{}
		if r != "" {
			all = append(all, r)
		}
		all = append(all, s.Spec.ExternalIPs...)
		if len(all) == 0 {
			return "<pending>"
		}
		return strings.Join(all, ",")
	}
	return "<unknown>"
}

// listWithMore is kubectl's way of showing at most three items of a list.
func listWithMore(list []string, count int) string {
	const maxShown = 3
	if count > maxShown {
		return fmt.Sprintf("%s + %d more...", strings.Join(list[:maxShown], ","), count-maxShown)
	}
	if len(list) == 0 {
		return "<unset>"
	}
	return strings.Join(list, ",")
}

// sliceEndpointPorts is kubectl's PORTS column of an EndpointSlice.
func sliceEndpointPorts(ports []discoveryv1.EndpointPort) string {
	var list []string
	for _, p := range ports {
		n := "*"
		if p.Port != nil {
			n = fmt.Sprint(*p.Port)
		} else if p.Name != nil {
			n = *p.Name
		}
		list = append(list, n)
	}
	return listWithMore(list, len(list))
}

// sliceEndpoints is kubectl's ENDPOINTS column of an EndpointSlice: addresses, at most three.
func sliceEndpoints(eps []discoveryv1.Endpoint) string {
	var list []string
	for _, ep := range eps {
		list = append(list, ep.Addresses...)
	}
	return listWithMore(list, len(list))
}
