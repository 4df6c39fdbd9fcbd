package manifest

import (
	"encoding/json"
	"reflect"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func TestDefault(t *testing.T) {
	tcp, udp := corev1.ProtocolTCP, corev1.ProtocolUDP
	cluster := corev1.ServiceInternalTrafficPolicyCluster
	singleStack := corev1.IPFamilyPolicySingleStack
	ipv4 := []corev1.IPFamily{corev1.IPv4Protocol}
	defaultPod := func(containers ...corev1.Container) corev1.PodSpec {
		return corev1.PodSpec{
			Containers:                    containers,
			RestartPolicy:                 corev1.RestartPolicyAlways,
			DNSPolicy:                     corev1.DNSClusterFirst,
			TerminationGracePeriodSeconds: ptr(int64(30)),
		}
	}

	tests := []struct {
		name string
		in   runtime.Object
		want runtime.Object
	}{
		{
			name: "namespace gets its name label",
			in:   &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{"team": "a", NamespaceNameLabel: "wrong"}}},
			want: &corev1.Namespace{
				TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
				ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{"team": "a", NamespaceNameLabel: "shop"}},
			},
		},
		{
			name: "pod",
			in: &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: "web"},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Ports: []corev1.ContainerPort{
					{ContainerPort: 80}, {ContainerPort: 53, Protocol: udp},
				}}}},
			},
			want: &corev1.Pod{
				TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
				ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
				Spec: defaultPod(corev1.Container{Name: "web", Ports: []corev1.ContainerPort{
					{ContainerPort: 80, Protocol: tcp}, {ContainerPort: 53, Protocol: udp},
				}}),
			},
		},
		{
			name: "pod keeps what is set",
			in: &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: "job", Namespace: "batch"},
				Spec: corev1.PodSpec{
					RestartPolicy: corev1.RestartPolicyNever, DNSPolicy: corev1.DNSDefault,
					TerminationGracePeriodSeconds: ptr(int64(0)),
					Containers:                    []corev1.Container{{Name: "job"}},
				},
			},
			want: &corev1.Pod{
				TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
				ObjectMeta: metav1.ObjectMeta{Name: "job", Namespace: "batch"},
				Spec: corev1.PodSpec{
					RestartPolicy: corev1.RestartPolicyNever, DNSPolicy: corev1.DNSDefault,
					TerminationGracePeriodSeconds: ptr(int64(0)),
					Containers:                    []corev1.Container{{Name: "job"}},
				},
			},
		},
		{
			name: "hostNetwork pod: hostPort follows containerPort",
			in: &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: "agent"},
				Spec:       corev1.PodSpec{HostNetwork: true, Containers: []corev1.Container{{Name: "a", Ports: []corev1.ContainerPort{{ContainerPort: 9100}}}}},
			},
			want: &corev1.Pod{
				TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
				ObjectMeta: metav1.ObjectMeta{Name: "agent", Namespace: "default"},
				Spec: func() corev1.PodSpec {
					s := defaultPod(corev1.Container{Name: "a", Ports: []corev1.ContainerPort{{ContainerPort: 9100, HostPort: 9100, Protocol: tcp}}})
					s.HostNetwork = true
					return s
				}(),
			},
		},
		{
			name: "deployment",
			in: &appsv1.Deployment{
				ObjectMeta: metav1.ObjectMeta{Name: "web"},
				Spec: appsv1.DeploymentSpec{
					Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
					Template: corev1.PodTemplateSpec{
						ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
						Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Ports: []corev1.ContainerPort{{ContainerPort: 8080}}}}},
					},
				},
			},
			want: &appsv1.Deployment{
				TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
				ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
				Spec: appsv1.DeploymentSpec{
					Replicas: ptr(int32(1)),
					Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
					Template: corev1.PodTemplateSpec{
						ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
						Spec:       defaultPod(corev1.Container{Name: "web", Ports: []corev1.ContainerPort{{ContainerPort: 8080, Protocol: tcp}}}),
					},
					Strategy: appsv1.DeploymentStrategy{
						Type: appsv1.RollingUpdateDeploymentStrategyType,
						RollingUpdate: &appsv1.RollingUpdateDeployment{
							MaxUnavailable: ptr(intstr.FromString("25%")),
							MaxSurge:       ptr(intstr.FromString("25%")),
						},
					},
					RevisionHistoryLimit:    ptr(int32(10)),
					ProgressDeadlineSeconds: ptr(int32(600)),
				},
			},
		},
		{
			name: "deployment keeps replicas 0 and Recreate",
			in: &appsv1.Deployment{
				ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"},
				Spec: appsv1.DeploymentSpec{
					Replicas: ptr(int32(0)),
					Strategy: appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType},
				},
			},
			want: &appsv1.Deployment{
				TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
				ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"},
				Spec: appsv1.DeploymentSpec{
					Replicas:                ptr(int32(0)),
					Strategy:                appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType},
					Template:                corev1.PodTemplateSpec{Spec: defaultPod()},
					RevisionHistoryLimit:    ptr(int32(10)),
					ProgressDeadlineSeconds: ptr(int32(600)),
				},
			},
		},
		{
			name: "ClusterIP service",
			in: &corev1.Service{
				ObjectMeta: metav1.ObjectMeta{Name: "web"},
				Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{
					{Name: "http", Port: 80},
					{Name: "named", Port: 81, TargetPort: intstr.FromString("http")},
					{Name: "dns", Port: 53, Protocol: udp, TargetPort: intstr.FromInt32(5353)},
				}},
			},
			want: &corev1.Service{
				TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
				ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
				Spec: corev1.ServiceSpec{
					Type: corev1.ServiceTypeClusterIP,
					Ports: []corev1.ServicePort{
						{Name: "http", Port: 80, Protocol: tcp, TargetPort: intstr.FromInt32(80)},
						{Name: "named", Port: 81, Protocol: tcp, TargetPort: intstr.FromString("http")},
						{Name: "dns", Port: 53, Protocol: udp, TargetPort: intstr.FromInt32(5353)},
					},
					SessionAffinity:       corev1.ServiceAffinityNone,
					InternalTrafficPolicy: &cluster,
					IPFamilyPolicy:        &singleStack,
					IPFamilies:            ipv4,
				},
			},
		},
		{
			name: "NodePort service",
			in: &corev1.Service{
				ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"},
				Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, Ports: []corev1.ServicePort{{Port: 80, NodePort: 30080}}},
			},
			want: &corev1.Service{
				TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
				ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"},
				Spec: corev1.ServiceSpec{
					Type:                  corev1.ServiceTypeNodePort,
					Ports:                 []corev1.ServicePort{{Port: 80, NodePort: 30080, Protocol: tcp, TargetPort: intstr.FromInt32(80)}},
					SessionAffinity:       corev1.ServiceAffinityNone,
					ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyCluster,
					InternalTrafficPolicy: &cluster,
					IPFamilyPolicy:        &singleStack,
					IPFamilies:            ipv4,
				},
			},
		},
		{
			name: "LoadBalancer service keeps Local",
			in: &corev1.Service{
				ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"},
				Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyLocal,
					Ports: []corev1.ServicePort{{Port: 443, TargetPort: intstr.FromInt32(8443)}}},
			},
			want: &corev1.Service{
				TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
				ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"},
				Spec: corev1.ServiceSpec{
					Type:                          corev1.ServiceTypeLoadBalancer,
					Ports:                         []corev1.ServicePort{{Port: 443, Protocol: tcp, TargetPort: intstr.FromInt32(8443)}},
					SessionAffinity:               corev1.ServiceAffinityNone,
					ExternalTrafficPolicy:         corev1.ServiceExternalTrafficPolicyLocal,
					AllocateLoadBalancerNodePorts: ptr(true),
					InternalTrafficPolicy:         &cluster,
					IPFamilyPolicy:                &singleStack,
					IPFamilies:                    ipv4,
				},
			},
		},
		{
			name: "ExternalName service",
			in: &corev1.Service{
				ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "shop"},
				Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "db.example.com"},
			},
			want: &corev1.Service{
				TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
				ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "shop"},
				Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "db.example.com",
					SessionAffinity: corev1.ServiceAffinityNone},
			},
		},
		{
			name: "ingress-only policy",
			in: &networkingv1.NetworkPolicy{
				ObjectMeta: metav1.ObjectMeta{Name: "allow"},
				Spec: networkingv1.NetworkPolicySpec{Ingress: []networkingv1.NetworkPolicyIngressRule{{
					Ports: []networkingv1.NetworkPolicyPort{{Port: ptr(intstr.FromInt32(80))}, {Protocol: &udp, Port: ptr(intstr.FromInt32(53))}},
				}}},
			},
			want: &networkingv1.NetworkPolicy{
				TypeMeta:   metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
				ObjectMeta: metav1.ObjectMeta{Name: "allow", Namespace: "default"},
				Spec: networkingv1.NetworkPolicySpec{
					Ingress: []networkingv1.NetworkPolicyIngressRule{{
						Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: ptr(intstr.FromInt32(80))}, {Protocol: &udp, Port: ptr(intstr.FromInt32(53))}},
					}},
					PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
				},
			},
		},
		{
			name: "policy with egress rules",
			in: &networkingv1.NetworkPolicy{
				ObjectMeta: metav1.ObjectMeta{Name: "egress", Namespace: "shop"},
				Spec: networkingv1.NetworkPolicySpec{Egress: []networkingv1.NetworkPolicyEgressRule{{
					Ports: []networkingv1.NetworkPolicyPort{{Port: ptr(intstr.FromString("dns"))}},
				}}},
			},
			want: &networkingv1.NetworkPolicy{
				TypeMeta:   metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
				ObjectMeta: metav1.ObjectMeta{Name: "egress", Namespace: "shop"},
				Spec: networkingv1.NetworkPolicySpec{
					Egress: []networkingv1.NetworkPolicyEgressRule{{
						Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: ptr(intstr.FromString("dns"))}},
					}},
					PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress},
				},
			},
		},
		{
			name: "explicit policyTypes kept",
			in: &networkingv1.NetworkPolicy{
				ObjectMeta: metav1.ObjectMeta{Name: "deny-egress", Namespace: "shop"},
				Spec:       networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}},
			},
			want: &networkingv1.NetworkPolicy{
				TypeMeta:   metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
				ObjectMeta: metav1.ObjectMeta{Name: "deny-egress", Namespace: "shop"},
				Spec:       networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			Default(tt.in)
			if !reflect.DeepEqual(tt.in, tt.want) {
				t.Fatalf("Default:\n got %s\nwant %s", asJSON(tt.in), asJSON(tt.want))
			}
			// Defaulting is idempotent.
			before := asJSON(tt.in)
			Default(tt.in)
			if after := asJSON(tt.in); after != before {
				t.Fatalf("second Default changed the object:\n%s\n%s", before, after)
			}
		})
	}
}

func asJSON(obj any) string {
	b, _ := json.Marshal(obj)
	return string(b)
}

func TestDefaultThenDecodeRoundTrip(t *testing.T) {
	// The defaulted shop example is valid and keeps what the file says.
	objs, err := Load(nil, []string{"testdata/shop.yaml"})
	if err != nil {
		t.Fatal(err)
	}
	dep := objs[1].(*appsv1.Deployment)
	if *dep.Spec.Replicas != 3 || dep.Namespace != "shop" || dep.Spec.Template.Spec.Containers[0].Ports[0].Protocol != corev1.ProtocolTCP {
		t.Errorf("deployment = %s", asJSON(dep.Spec))
	}
	pod := objs[3].(*corev1.Pod)
	if pod.Spec.RestartPolicy != corev1.RestartPolicyAlways || pod.Spec.NodeName != "node-1" {
		t.Errorf("pod = %s", asJSON(pod.Spec))
	}
	deny := objs[4].(*networkingv1.NetworkPolicy)
	if !reflect.DeepEqual(deny.Spec.PolicyTypes, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}) {
		t.Errorf("default-deny policyTypes = %v", deny.Spec.PolicyTypes)
	}
	allow := objs[5].(*networkingv1.NetworkPolicy)
	if !reflect.DeepEqual(allow.Spec.PolicyTypes, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}) {
		t.Errorf("web-from-client policyTypes = %v", allow.Spec.PolicyTypes)
	}
	if p := allow.Spec.Ingress[0].Ports[0].Protocol; p == nil || *p != corev1.ProtocolTCP {
		t.Errorf("policy port protocol = %v", p)
	}
}
