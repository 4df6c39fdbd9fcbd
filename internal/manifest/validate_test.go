package manifest

import (
	"errors"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

func namespace(mut func(*corev1.Namespace)) runtime.Object {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{"team": "a"}}}
	if mut != nil {
		mut(ns)
	}
	return ns
}

func pod(mut func(*corev1.Pod)) runtime.Object {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "shop", Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name:  "web",
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}, {Name: "dns", ContainerPort: 53, Protocol: corev1.ProtocolUDP}},
		}}},
	}
	if mut != nil {
		mut(p)
	}
	return p
}

func deployment(mut func(*appsv1.Deployment)) runtime.Object {
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr(int32(3)),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web", "tier": "front"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Ports: []corev1.ContainerPort{{ContainerPort: 8080}}}}},
			},
		},
	}
	if mut != nil {
		mut(d)
	}
	return d
}

func service(mut func(*corev1.Service)) runtime.Object {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "web"},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}, {Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP}},
		},
	}
	if mut != nil {
		mut(s)
	}
	return s
}

func policy(mut func(*networkingv1.NetworkPolicy)) runtime.Object {
	tcp := corev1.ProtocolTCP
	p := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "web.allow", Namespace: "shop"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: ptr(intstr.FromInt32(8000)), EndPort: ptr(int32(8080))}, {Port: ptr(intstr.FromString("http"))}},
				From: []networkingv1.NetworkPolicyPeer{
					{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"role": "client"}}, NamespaceSelector: &metav1.LabelSelector{}},
					{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/8", Except: []string{"10.96.0.0/12"}}},
				},
			}},
			Egress: []networkingv1.NetworkPolicyEgressRule{{
				To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "0.0.0.0/0"}}},
			}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress},
		},
	}
	if mut != nil {
		mut(p)
	}
	return p
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		obj  runtime.Object
		want []string // one substring per expected problem, in order; none = valid
	}{
		// Namespace.
		{"namespace ok", namespace(nil), nil},
		{"namespace name must be a DNS label", namespace(func(n *corev1.Namespace) { n.Name = "shop.eu" }),
			[]string{`metadata.name: Invalid value: "shop.eu": must not contain dots`}},
		{"namespace name upper case", namespace(func(n *corev1.Namespace) { n.Name = "Shop" }),
			[]string{`metadata.name: Invalid value: "Shop"`}},
		{"namespace has no namespace", namespace(func(n *corev1.Namespace) { n.Namespace = "default" }),
			[]string{`metadata.namespace: Forbidden: not allowed on this type`}},
		{"name required", namespace(func(n *corev1.Namespace) { n.Name = "" }),
			[]string{`metadata.name: Required value`}},
		{"generateName unsupported", pod(func(p *corev1.Pod) { p.Name, p.GenerateName = "", "web-" }),
			[]string{`metadata.name: Required value: generateName is not supported`}},
		{"label key invalid", namespace(func(n *corev1.Namespace) { n.Labels["-team"] = "a" }),
			[]string{`metadata.labels: Invalid value: "-team"`}},
		{"label value invalid", pod(func(p *corev1.Pod) { p.Labels["app"] = "web app" }),
			[]string{`metadata.labels: Invalid value: "web app"`}},
		{"annotation key invalid", pod(func(p *corev1.Pod) { p.Annotations = map[string]string{"a b": "x"} }),
			[]string{`metadata.annotations: Invalid value: "a b"`}},

		// Pod.
		{"pod ok", pod(nil), nil},
		{"pod ok after defaulting", func() runtime.Object { p := pod(nil); Default(p); return p }(), nil},
		{"pod name is a DNS subdomain", pod(func(p *corev1.Pod) { p.Name = "web.v1" }), nil},
		{"pod name invalid", pod(func(p *corev1.Pod) { p.Name = "Web_1" }),
			[]string{`metadata.name: Invalid value: "Web_1": a lowercase RFC 1123 subdomain`}},
		{"pod namespace invalid", pod(func(p *corev1.Pod) { p.Namespace = "my.ns" }),
			[]string{`metadata.namespace: Invalid value: "my.ns"`}},
		{"no containers", pod(func(p *corev1.Pod) { p.Spec.Containers = nil }),
			[]string{`spec.containers: Required value: must have at least one container`}},
		{"container name required", pod(func(p *corev1.Pod) { p.Spec.Containers[0].Name = "" }),
			[]string{`spec.containers[0].name: Required value`}},
		{"container name invalid", pod(func(p *corev1.Pod) { p.Spec.Containers[0].Name = "Web" }),
			[]string{`spec.containers[0].name: Invalid value: "Web"`}},
		{"container names unique", pod(func(p *corev1.Pod) {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "web"})
		}), []string{`spec.containers[1].name: Duplicate value: "web"`}},
		{"init container names count too", pod(func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: "web"}}
		}), []string{`spec.containers[0].name: Duplicate value: "web"`}},
		{"containerPort out of range", pod(func(p *corev1.Pod) { p.Spec.Containers[0].Ports[0].ContainerPort = 70000 }),
			[]string{`spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive`}},
		{"containerPort required", pod(func(p *corev1.Pod) { p.Spec.Containers[0].Ports[0].ContainerPort = 0 }),
			[]string{`spec.containers[0].ports[0].containerPort: Required value`}},
		{"hostPort out of range", pod(func(p *corev1.Pod) { p.Spec.Containers[0].Ports[0].HostPort = -1 }),
			[]string{`spec.containers[0].ports[0].hostPort: Invalid value: -1`}},
		{"hostPort with hostNetwork must match", pod(func(p *corev1.Pod) {
			p.Spec.HostNetwork = true
			p.Spec.Containers[0].Ports[0].HostPort = 80
		}), []string{`spec.containers[0].ports[0].hostPort: Invalid value: 80: must match`}},
		{"port protocol", pod(func(p *corev1.Pod) { p.Spec.Containers[0].Ports[0].Protocol = "tcp" }),
			[]string{`spec.containers[0].ports[0].protocol: Unsupported value: "tcp": supported values: "TCP", "UDP", "SCTP"`}},
		{"port name too long", pod(func(p *corev1.Pod) { p.Spec.Containers[0].Ports[0].Name = "http-alternative" }),
			[]string{`spec.containers[0].ports[0].name: Invalid value: "http-alternative": must be no more than 15 characters`}},
		{"port name needs a letter", pod(func(p *corev1.Pod) { p.Spec.Containers[0].Ports[0].Name = "8080" }),
			[]string{`spec.containers[0].ports[0].name: Invalid value: "8080": must contain at least one letter`}},
		{"port names unique", pod(func(p *corev1.Pod) { p.Spec.Containers[0].Ports[1].Name = "http" }),
			[]string{`spec.containers[0].ports[1].name: Duplicate value: "http"`}},
		{"same port, other protocol", pod(func(p *corev1.Pod) {
			p.Spec.Containers[0].Ports = append(p.Spec.Containers[0].Ports, corev1.ContainerPort{ContainerPort: 8080, Protocol: corev1.ProtocolUDP})
		}), nil},
		{"duplicate port and protocol across containers", pod(func(p *corev1.Pod) {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "sidecar", Ports: []corev1.ContainerPort{{ContainerPort: 8080, Protocol: corev1.ProtocolTCP}}})
		}), []string{`spec.containers[1].ports[0].containerPort: Duplicate value: "8080/TCP"`}},
		{"hostIP invalid", pod(func(p *corev1.Pod) { p.Spec.Containers[0].Ports[0].HostIP = "1.2.3" }),
			[]string{`spec.containers[0].ports[0].hostIP: Invalid value: "1.2.3"`}},
		{"nodeName invalid", pod(func(p *corev1.Pod) { p.Spec.NodeName = "Node_1" }),
			[]string{`spec.nodeName: Invalid value: "Node_1"`}},
		{"nodeName subdomain ok", pod(func(p *corev1.Pod) { p.Spec.NodeName = "node-1.lab" }), nil},
		{"hostname is a label", pod(func(p *corev1.Pod) { p.Spec.Hostname = "web.1" }),
			[]string{`spec.hostname: Invalid value: "web.1"`}},
		{"subdomain is a label", pod(func(p *corev1.Pod) { p.Spec.Subdomain = "Web" }),
			[]string{`spec.subdomain: Invalid value: "Web"`}},
		{"restartPolicy", pod(func(p *corev1.Pod) { p.Spec.RestartPolicy = "Sometimes" }),
			[]string{`spec.restartPolicy: Unsupported value: "Sometimes"`}},
		{"dnsPolicy", pod(func(p *corev1.Pod) { p.Spec.DNSPolicy = "Cluster" }),
			[]string{`spec.dnsPolicy: Unsupported value: "Cluster"`}},
		{"dnsPolicy None needs dnsConfig", pod(func(p *corev1.Pod) { p.Spec.DNSPolicy = corev1.DNSNone }),
			[]string{"spec.dnsConfig: Required value: must provide `dnsConfig` when `dnsPolicy` is None"}},
		{"dnsConfig nameserver", pod(func(p *corev1.Pod) {
			p.Spec.DNSPolicy = corev1.DNSNone
			p.Spec.DNSConfig = &corev1.PodDNSConfig{Nameservers: []string{"10.96.0.10", "ten"}}
		}), []string{`spec.dnsConfig.nameservers[1]: Invalid value: "ten"`}},
		{"negative grace period", pod(func(p *corev1.Pod) { p.Spec.TerminationGracePeriodSeconds = ptr(int64(-5)) }),
			[]string{`spec.terminationGracePeriodSeconds: Invalid value: -5: must be greater than or equal to 0`}},
		{"several problems, one error each", pod(func(p *corev1.Pod) {
			p.Name = "Web"
			p.Spec.Containers[0].Ports[0].ContainerPort = 70000
			p.Spec.Containers[0].Ports[1].Protocol = "ICMP"
		}), []string{`metadata.name: Invalid value: "Web"`, `ports[0].containerPort: Invalid value: 70000`, `ports[1].protocol: Unsupported value: "ICMP"`}},

		// Deployment.
		{"deployment ok", deployment(nil), nil},
		{"deployment ok with expressions", deployment(func(d *appsv1.Deployment) {
			d.Spec.Selector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "tier", Operator: metav1.LabelSelectorOpIn, Values: []string{"front", "back"}}}}
		}), nil},
		{"deployment name", deployment(func(d *appsv1.Deployment) { d.Name = "web_app" }),
			[]string{`metadata.name: Invalid value: "web_app"`}},
		{"replicas negative", deployment(func(d *appsv1.Deployment) { d.Spec.Replicas = ptr(int32(-1)) }),
			[]string{`spec.replicas: Invalid value: -1: must be greater than or equal to 0`}},
		{"replicas zero ok", deployment(func(d *appsv1.Deployment) { d.Spec.Replicas = ptr(int32(0)) }), nil},
		{"selector required", deployment(func(d *appsv1.Deployment) { d.Spec.Selector = nil }),
			[]string{`spec.selector: Required value`}},
		{"selector empty", deployment(func(d *appsv1.Deployment) { d.Spec.Selector = &metav1.LabelSelector{} }),
			[]string{`empty selector is invalid for deployment`}},
		{"selector must match template", deployment(func(d *appsv1.Deployment) { d.Spec.Selector.MatchLabels["app"] = "api" }),
			[]string{"spec.template.metadata.labels: Invalid value: {\"app\":\"web\",\"tier\":\"front\"}: `selector` does not match template `labels`"}},
		{"selector operator", deployment(func(d *appsv1.Deployment) {
			d.Spec.Selector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "app", Operator: "Is", Values: []string{"web"}}}}
		}), []string{`spec.selector.matchExpressions[0].operator`}},
		{"template label invalid", deployment(func(d *appsv1.Deployment) { d.Spec.Template.Labels["tier"] = "front end" }),
			[]string{`spec.template.metadata.labels: Invalid value: "front end"`}},
		{"template pod spec validated", deployment(func(d *appsv1.Deployment) { d.Spec.Template.Spec.Containers[0].Ports[0].ContainerPort = 0 }),
			[]string{`spec.template.spec.containers[0].ports[0].containerPort: Required value`}},
		{"template restartPolicy must be Always", deployment(func(d *appsv1.Deployment) { d.Spec.Template.Spec.RestartPolicy = corev1.RestartPolicyNever }),
			[]string{`spec.template.spec.restartPolicy: Unsupported value: "Never": supported values: "Always"`}},
		{"strategy type", deployment(func(d *appsv1.Deployment) { d.Spec.Strategy.Type = "BlueGreen" }),
			[]string{`spec.strategy.type: Unsupported value: "BlueGreen"`}},

		// Service.
		{"service ok", service(nil), nil},
		{"service ok after defaulting", func() runtime.Object { s := service(nil); Default(s); return s }(), nil},
		{"service NodePort ok", service(func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeNodePort
			s.Spec.Ports[0].NodePort = 30080
			s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
		}), nil},
		{"service LoadBalancer ok", func() runtime.Object {
			s := service(func(s *corev1.Service) {
				s.Spec.Type = corev1.ServiceTypeLoadBalancer
				s.Spec.LoadBalancerSourceRanges = []string{"192.0.2.0/24"}
			})
			Default(s)
			return s
		}(), nil},
		{"headless without ports ok", service(func(s *corev1.Service) { s.Spec.ClusterIP = "None"; s.Spec.Ports = nil }), nil},
		{"ExternalName ok", service(func(s *corev1.Service) {
			s.Spec = corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "db.example.com."}
		}), nil},
		{"ExternalName ok after defaulting", func() runtime.Object {
			s := service(func(s *corev1.Service) {
				s.Spec = corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "db.example.com"}
			})
			Default(s)
			return s
		}(), nil},
		{"service name is a DNS-1035 label", service(func(s *corev1.Service) { s.Name = "1web" }),
			[]string{`metadata.name: Invalid value: "1web": a DNS-1035 label`}},
		{"service name no dots", service(func(s *corev1.Service) { s.Name = "web.v1" }),
			[]string{`metadata.name: Invalid value: "web.v1"`}},
		{"service type", service(func(s *corev1.Service) { s.Spec.Type = "Internal" }),
			[]string{`spec.type: Unsupported value: "Internal": supported values: "ClusterIP", "NodePort", "LoadBalancer", "ExternalName"`}},
		{"ports required", service(func(s *corev1.Service) { s.Spec.Ports = nil }),
			[]string{`spec.ports: Required value`}},
		{"port zero", service(func(s *corev1.Service) { s.Spec.Ports[0].Port = 0 }),
			[]string{`spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive`}},
		{"port too big", service(func(s *corev1.Service) { s.Spec.Ports[1].Port = 65536 }),
			[]string{`spec.ports[1].port: Invalid value: 65536`}},
		{"port protocol", service(func(s *corev1.Service) { s.Spec.Ports[0].Protocol = "HTTP" }),
			[]string{`spec.ports[0].protocol: Unsupported value: "HTTP"`}},
		{"port names required with several ports", service(func(s *corev1.Service) { s.Spec.Ports[1].Name = "" }),
			[]string{`spec.ports[1].name: Required value`}},
		{"single port needs no name", service(func(s *corev1.Service) {
			s.Spec.Ports = []corev1.ServicePort{{Port: 80}}
		}), nil},
		{"port names unique", service(func(s *corev1.Service) { s.Spec.Ports[1].Name = "http" }),
			[]string{`spec.ports[1].name: Duplicate value: "http"`}},
		{"port name is a DNS label", service(func(s *corev1.Service) { s.Spec.Ports[0].Name = "HTTP" }),
			[]string{`spec.ports[0].name: Invalid value: "HTTP"`}},
		{"duplicate port and protocol", service(func(s *corev1.Service) { s.Spec.Ports[1].Port = 80; s.Spec.Ports[1].Protocol = "" }),
			[]string{`spec.ports[1].port: Duplicate value: "80/TCP"`}},
		{"same port number, other protocol", service(func(s *corev1.Service) { s.Spec.Ports[1].Port = 80 }), nil},
		{"targetPort number", service(func(s *corev1.Service) { s.Spec.Ports[1].TargetPort = intstr.FromInt32(70000) }),
			[]string{`spec.ports[1].targetPort: Invalid value: 70000: must be between 1 and 65535`}},
		{"targetPort name", service(func(s *corev1.Service) { s.Spec.Ports[0].TargetPort = intstr.FromString("web_http") }),
			[]string{`spec.ports[0].targetPort: Invalid value: "web_http"`}},
		{"nodePort only for NodePort and LoadBalancer", service(func(s *corev1.Service) { s.Spec.Ports[0].NodePort = 30080 }),
			[]string{"spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"}},
		{"nodePort range", service(func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeNodePort
			s.Spec.Ports[0].NodePort = 8080
		}), []string{`spec.ports[0].nodePort: Invalid value: 8080: must be between 30000 and 32767, inclusive`}},
		{"nodePort duplicate", service(func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeLoadBalancer
			s.Spec.Ports[0].NodePort = 30053
			s.Spec.Ports[1].NodePort = 30053
			s.Spec.Ports[1].Protocol = corev1.ProtocolTCP
		}), []string{`spec.ports[1].nodePort: Duplicate value: "30053/TCP"`}},
		{"clusterIP address", service(func(s *corev1.Service) { s.Spec.ClusterIP = "10.96.0.300" }),
			[]string{`spec.clusterIP: Invalid value: "10.96.0.300"`}},
		{"clusterIP IPv4 ok", service(func(s *corev1.Service) { s.Spec.ClusterIP = "10.96.0.10" }), nil},
		{"clusterIP IPv4 only", service(func(s *corev1.Service) { s.Spec.ClusterIP = "fd00::10" }),
			[]string{`spec.clusterIP: Invalid value: "fd00::10": must be an IPv4 address`}},
		{"clusterIP None not for NodePort", service(func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeNodePort
			s.Spec.ClusterIP = "None"
		}), []string{`spec.clusterIP: Invalid value: "None": may not be set to 'None' for NodePort services`}},
		{"clusterIPs must match clusterIP", service(func(s *corev1.Service) {
			s.Spec.ClusterIP = "10.96.0.10"
			s.Spec.ClusterIPs = []string{"10.96.0.11"}
		}), []string{"spec.clusterIPs[0]: Invalid value: \"10.96.0.11\": must match `clusterIP`"}},
		{"ExternalName needs externalName", service(func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeExternalName }),
			[]string{`spec.externalName: Required value`}},
		{"externalName is a DNS subdomain", service(func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeExternalName
			s.Spec.ExternalName = "db_host"
		}), []string{`spec.externalName: Invalid value: "db_host"`}},
		{"ExternalName has no clusterIP", service(func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeExternalName
			s.Spec.ExternalName = "db.example.com"
			s.Spec.ClusterIP = "10.96.0.10"
		}), []string{`spec.clusterIP: Forbidden: must be empty for ExternalName services`}},
		{"externalTrafficPolicy only when external", service(func(s *corev1.Service) {
			s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
		}), []string{`spec.externalTrafficPolicy: Forbidden: may only be set for externally-accessible services`}},
		{"externalTrafficPolicy value", service(func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeNodePort
			s.Spec.ExternalTrafficPolicy = "Nearby"
		}), []string{`spec.externalTrafficPolicy: Unsupported value: "Nearby"`}},
		{"internalTrafficPolicy value", service(func(s *corev1.Service) {
			s.Spec.InternalTrafficPolicy = ptr(corev1.ServiceInternalTrafficPolicy("Node"))
		}), []string{`spec.internalTrafficPolicy: Unsupported value: "Node"`}},
		{"sessionAffinity", service(func(s *corev1.Service) { s.Spec.SessionAffinity = "Sticky" }),
			[]string{`spec.sessionAffinity: Unsupported value: "Sticky"`}},
		{"ipFamilies IPv6 not configured", service(func(s *corev1.Service) { s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv6Protocol} }),
			[]string{`spec.ipFamilies[0]: Invalid value: "IPv6": not configured on this cluster`}},
		{"ipFamilyPolicy RequireDualStack", service(func(s *corev1.Service) {
			s.Spec.IPFamilyPolicy = ptr(corev1.IPFamilyPolicyRequireDualStack)
		}), []string{`spec.ipFamilyPolicy: Invalid value: "RequireDualStack": the cluster is single-stack IPv4`}},
		{"selector label value", service(func(s *corev1.Service) { s.Spec.Selector["app"] = "web!" }),
			[]string{`spec.selector: Invalid value: "web!"`}},
		{"loadBalancerIP only for LoadBalancer", service(func(s *corev1.Service) { s.Spec.LoadBalancerIP = "192.0.2.10" }),
			[]string{"spec.loadBalancerIP: Forbidden: may only be used when `type` is 'LoadBalancer'"}},
		{"externalIPs", service(func(s *corev1.Service) { s.Spec.ExternalIPs = []string{"192.0.2.10", "nope"} }),
			[]string{`spec.externalIPs[1]: Invalid value: "nope"`}},
		{"healthCheckNodePort only for LoadBalancer with Local", service(func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeLoadBalancer
			s.Spec.HealthCheckNodePort = 30100
		}), []string{"spec.healthCheckNodePort: Invalid value: 30100: may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'"}},
		{"healthCheckNodePort range", service(func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeLoadBalancer
			s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
			s.Spec.HealthCheckNodePort = 10256
		}), []string{"spec.healthCheckNodePort: Invalid value: 10256: must be between 30000 and 32767, inclusive"}},
		{"healthCheckNodePort ok", service(func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeLoadBalancer
			s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
			s.Spec.HealthCheckNodePort = 30100
		}), nil},

		// NetworkPolicy.
		{"policy ok", policy(nil), nil},
		{"policy ok after defaulting", func() runtime.Object { p := policy(nil); Default(p); return p }(), nil},
		{"empty policy ok", policy(func(p *networkingv1.NetworkPolicy) { p.Spec = networkingv1.NetworkPolicySpec{} }), nil},
		{"policy name", policy(func(p *networkingv1.NetworkPolicy) { p.Name = "Allow" }),
			[]string{`metadata.name: Invalid value: "Allow"`}},
		{"policyTypes values", policy(func(p *networkingv1.NetworkPolicy) { p.Spec.PolicyTypes = []networkingv1.PolicyType{"Ingress", "Both"} }),
			[]string{`spec.policyTypes[1]: Unsupported value: "Both": supported values: "Ingress", "Egress"`}},
		{"policyTypes duplicate", policy(func(p *networkingv1.NetworkPolicy) {
			p.Spec.PolicyTypes = []networkingv1.PolicyType{"Egress", "Egress"}
		}),
			[]string{`spec.policyTypes[1]: Duplicate value: "Egress"`}},
		{"port protocol", policy(func(p *networkingv1.NetworkPolicy) {
			p.Spec.Ingress[0].Ports[0].Protocol = ptr(corev1.Protocol("ICMP"))
		}),
			[]string{`spec.ingress[0].ports[0].protocol: Unsupported value: "ICMP"`}},
		{"endPort below port", policy(func(p *networkingv1.NetworkPolicy) { p.Spec.Ingress[0].Ports[0].EndPort = ptr(int32(80)) }),
			[]string{"spec.ingress[0].ports[0].endPort: Invalid value: 80: must be greater than or equal to `port`"}},
		{"endPort too big", policy(func(p *networkingv1.NetworkPolicy) { p.Spec.Ingress[0].Ports[0].EndPort = ptr(int32(70000)) }),
			[]string{`spec.ingress[0].ports[0].endPort: Invalid value: 70000: must be between 1 and 65535`}},
		{"endPort with named port", policy(func(p *networkingv1.NetworkPolicy) { p.Spec.Ingress[0].Ports[1].EndPort = ptr(int32(9000)) }),
			[]string{"spec.ingress[0].ports[1].endPort: Invalid value: 9000: may not be specified when `port` is non-numeric"}},
		{"endPort without port", policy(func(p *networkingv1.NetworkPolicy) {
			p.Spec.Egress[0].Ports = []networkingv1.NetworkPolicyPort{{EndPort: ptr(int32(9000))}}
		}), []string{"spec.egress[0].ports[0].endPort: Invalid value: 9000: may not be specified when `port` is not specified"}},
		{"numeric port range", policy(func(p *networkingv1.NetworkPolicy) {
			p.Spec.Ingress[0].Ports[0].Port = ptr(intstr.FromInt32(0))
			p.Spec.Ingress[0].Ports[0].EndPort = nil
		}), []string{`spec.ingress[0].ports[0].port: Invalid value: 0`}},
		{"named port", policy(func(p *networkingv1.NetworkPolicy) { p.Spec.Ingress[0].Ports[1].Port = ptr(intstr.FromString("HTTP")) }),
			[]string{`spec.ingress[0].ports[1].port: Invalid value: "HTTP"`}},
		{"empty peer", policy(func(p *networkingv1.NetworkPolicy) {
			p.Spec.Ingress[0].From = append(p.Spec.Ingress[0].From, networkingv1.NetworkPolicyPeer{})
		}), []string{`spec.ingress[0].from[2]: Required value: must specify a peer`}},
		{"ipBlock combined with a selector", policy(func(p *networkingv1.NetworkPolicy) {
			p.Spec.Egress[0].To[0].PodSelector = &metav1.LabelSelector{}
		}), []string{`spec.egress[0].to[0].ipBlock: Forbidden: may not be combined with podSelector or namespaceSelector`}},
		{"ipBlock cidr", policy(func(p *networkingv1.NetworkPolicy) { p.Spec.Ingress[0].From[1].IPBlock.CIDR = "10.0.0.0/33" }),
			[]string{`spec.ingress[0].from[1].ipBlock.cidr: Invalid value: "10.0.0.0/33"`}},
		{"ipBlock cidr required", policy(func(p *networkingv1.NetworkPolicy) { p.Spec.Egress[0].To[0].IPBlock.CIDR = "" }),
			[]string{`spec.egress[0].to[0].ipBlock.cidr: Required value`}},
		{"except outside cidr", policy(func(p *networkingv1.NetworkPolicy) {
			p.Spec.Ingress[0].From[1].IPBlock.Except = []string{"10.96.0.0/12", "192.168.0.0/16"}
		}), []string{"spec.ingress[0].from[1].ipBlock.except[1]: Invalid value: \"192.168.0.0/16\": must be a strict subset of `cidr`"}},
		{"except equal to cidr", policy(func(p *networkingv1.NetworkPolicy) {
			p.Spec.Ingress[0].From[1].IPBlock.Except = []string{"10.0.0.0/8"}
		}), []string{"spec.ingress[0].from[1].ipBlock.except[0]: Invalid value: \"10.0.0.0/8\": must be a strict subset"}},
		{"except malformed", policy(func(p *networkingv1.NetworkPolicy) {
			p.Spec.Ingress[0].From[1].IPBlock.Except = []string{"10.1.0.0"}
		}), []string{`spec.ingress[0].from[1].ipBlock.except[0]: Invalid value: "10.1.0.0": must be a valid CIDR`}},
		{"peer selector label", policy(func(p *networkingv1.NetworkPolicy) {
			p.Spec.Ingress[0].From[0].PodSelector.MatchLabels["role"] = "client app"
		}), []string{`spec.ingress[0].from[0].podSelector.matchLabels: Invalid value: "client app"`}},
		{"podSelector label", policy(func(p *networkingv1.NetworkPolicy) {
			p.Spec.PodSelector.MatchLabels = map[string]string{"bad key!": "x"}
		}), []string{`spec.podSelector.matchLabels: Invalid value: "bad key!"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Validate(tt.obj)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			var inv *InvalidError
			if !errors.As(err, &inv) {
				t.Fatalf("Validate = %v (%T), want *InvalidError", err, err)
			}
			if len(inv.Errors) != len(tt.want) {
				t.Fatalf("got %d problems, want %d:\n%v", len(inv.Errors), len(tt.want), err)
			}
			for i, w := range tt.want {
				if !strings.Contains(inv.Errors[i].Error(), w) {
					t.Errorf("problem %d = %q\nwant containing %q", i+1, inv.Errors[i].Error(), w)
				}
			}
		})
	}
}

func TestInvalidErrorFormat(t *testing.T) {
	err := Validate(pod(func(p *corev1.Pod) {
		p.Name = "web"
		p.Spec.Containers[0].Ports[0].ContainerPort = 70000
		p.Spec.NodeName = "Node_1"
	}))
	want := `Pod "web" is invalid: spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive` + "\n" +
		`Pod "web" is invalid: spec.nodeName: Invalid value: "Node_1": `
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("error =\n%v\nwant prefix\n%s", err, want)
	}
	var fe *field.Error
	if !errors.As(err, &fe) || fe.Field != "spec.containers[0].ports[0].containerPort" || fe.Type != field.ErrorTypeInvalid {
		t.Errorf("errors.As *field.Error = %+v", fe)
	}
}

func TestValidateUnsupportedType(t *testing.T) {
	err := Validate(&corev1.ConfigMap{})
	if err == nil || !strings.Contains(err.Error(), "unsupported object type *v1.ConfigMap") {
		t.Fatalf("Validate(ConfigMap) = %v", err)
	}
}
