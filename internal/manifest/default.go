package manifest

import (
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// DefaultNamespace is the namespace of namespaced objects that name none.
const DefaultNamespace = metav1.NamespaceDefault

// NamespaceNameLabel is the label kube-apiserver puts on every Namespace, holding its
// name, so that NetworkPolicy namespaceSelectors can select namespaces by name.
const NamespaceNameLabel = "kubernetes.io/metadata.name"

// Default fills in, as kube-apiserver does on create, the defaulted fields the lab
// relies on. It never overwrites a value that is set, except the Namespace name label,
// which kube-apiserver also always sets. Objects of other types are left alone.
//
//   - every namespaced object: namespace "default" when empty; apiVersion/kind when empty
//   - Namespace: label kubernetes.io/metadata.name=<name>
//   - Pod (and a Deployment's pod template): restartPolicy Always, dnsPolicy
//     ClusterFirst, terminationGracePeriodSeconds 30, container port protocol TCP,
//     hostPort = containerPort with hostNetwork
//   - Deployment: replicas 1, strategy RollingUpdate 25%/25%, revisionHistoryLimit 10,
//     progressDeadlineSeconds 600
//   - StatefulSet: replicas 1, podManagementPolicy OrderedReady, updateStrategy
//     RollingUpdate with partition 0, revisionHistoryLimit 10,
//     persistentVolumeClaimRetentionPolicy Retain/Retain
//   - Service: type ClusterIP, port protocol TCP, targetPort = port, sessionAffinity
//     None; unless ExternalName: internalTrafficPolicy Cluster, ipFamilyPolicy
//     SingleStack, ipFamilies [IPv4]; NodePort/LoadBalancer: externalTrafficPolicy
//     Cluster; LoadBalancer: allocateLoadBalancerNodePorts true
//   - NetworkPolicy: policyTypes [Ingress] plus Egress when there are egress rules,
//     port protocol TCP
func Default(obj runtime.Object) {
	if obj == nil {
		return
	}
	SetTypeMeta(obj)
	switch o := obj.(type) {
	case *corev1.Namespace:
		if o.Name != "" {
			if o.Labels == nil {
				o.Labels = map[string]string{}
			}
			o.Labels[NamespaceNameLabel] = o.Name
		}
	case *corev1.Pod:
		defaultNamespace(&o.ObjectMeta)
		defaultPodSpec(&o.Spec)
	case *appsv1.Deployment:
		defaultNamespace(&o.ObjectMeta)
		defaultDeploymentSpec(&o.Spec)
	case *appsv1.StatefulSet:
		defaultNamespace(&o.ObjectMeta)
		defaultStatefulSetSpec(&o.Spec)
	case *corev1.Service:
		defaultNamespace(&o.ObjectMeta)
		defaultServiceSpec(&o.Spec)
	case *networkingv1.NetworkPolicy:
		defaultNamespace(&o.ObjectMeta)
		defaultNetworkPolicySpec(&o.Spec)
	}
}

func defaultNamespace(m *metav1.ObjectMeta) {
	if m.Namespace == "" {
		m.Namespace = DefaultNamespace
	}
}

func defaultPodSpec(spec *corev1.PodSpec) {
	if spec.RestartPolicy == "" {
		spec.RestartPolicy = corev1.RestartPolicyAlways
	}
	if spec.DNSPolicy == "" {
		spec.DNSPolicy = corev1.DNSClusterFirst
	}
	if spec.TerminationGracePeriodSeconds == nil {
		spec.TerminationGracePeriodSeconds = ptr(int64(corev1.DefaultTerminationGracePeriodSeconds))
	}
	for _, cs := range [][]corev1.Container{spec.InitContainers, spec.Containers} {
		for i := range cs {
			for j := range cs[i].Ports {
				port := &cs[i].Ports[j]
				if port.Protocol == "" {
					port.Protocol = corev1.ProtocolTCP
				}
				if spec.HostNetwork && port.HostPort == 0 {
					port.HostPort = port.ContainerPort
				}
			}
		}
	}
}

func defaultDeploymentSpec(spec *appsv1.DeploymentSpec) {
	if spec.Replicas == nil {
		spec.Replicas = ptr(int32(1))
	}
	if spec.Strategy.Type == "" {
		spec.Strategy.Type = appsv1.RollingUpdateDeploymentStrategyType
	}
	if spec.Strategy.Type == appsv1.RollingUpdateDeploymentStrategyType {
		if spec.Strategy.RollingUpdate == nil {
			spec.Strategy.RollingUpdate = &appsv1.RollingUpdateDeployment{}
		}
		if spec.Strategy.RollingUpdate.MaxUnavailable == nil {
			spec.Strategy.RollingUpdate.MaxUnavailable = ptr(intstr.FromString("25%"))
		}
		if spec.Strategy.RollingUpdate.MaxSurge == nil {
			spec.Strategy.RollingUpdate.MaxSurge = ptr(intstr.FromString("25%"))
		}
	}
	if spec.RevisionHistoryLimit == nil {
		spec.RevisionHistoryLimit = ptr(int32(10))
	}
	if spec.ProgressDeadlineSeconds == nil {
		spec.ProgressDeadlineSeconds = ptr(int32(600))
	}
	defaultPodSpec(&spec.Template.Spec)
}

func defaultStatefulSetSpec(spec *appsv1.StatefulSetSpec) {
	if spec.Replicas == nil {
		spec.Replicas = ptr(int32(1))
	}
	if spec.PodManagementPolicy == "" {
		spec.PodManagementPolicy = appsv1.OrderedReadyPodManagement
	}
	if spec.UpdateStrategy.Type == "" {
		spec.UpdateStrategy.Type = appsv1.RollingUpdateStatefulSetStrategyType
	}
	if spec.UpdateStrategy.Type == appsv1.RollingUpdateStatefulSetStrategyType {
		if spec.UpdateStrategy.RollingUpdate == nil {
			spec.UpdateStrategy.RollingUpdate = &appsv1.RollingUpdateStatefulSetStrategy{}
		}
		if spec.UpdateStrategy.RollingUpdate.Partition == nil {
			spec.UpdateStrategy.RollingUpdate.Partition = ptr(int32(0))
		}
	}
	if spec.RevisionHistoryLimit == nil {
		spec.RevisionHistoryLimit = ptr(int32(10))
	}
	if spec.PersistentVolumeClaimRetentionPolicy == nil {
		spec.PersistentVolumeClaimRetentionPolicy = &appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy{}
	}
	if spec.PersistentVolumeClaimRetentionPolicy.WhenDeleted == "" {
		spec.PersistentVolumeClaimRetentionPolicy.WhenDeleted = appsv1.RetainPersistentVolumeClaimRetentionPolicyType
	}
	if spec.PersistentVolumeClaimRetentionPolicy.WhenScaled == "" {
		spec.PersistentVolumeClaimRetentionPolicy.WhenScaled = appsv1.RetainPersistentVolumeClaimRetentionPolicyType
	}
	defaultPodSpec(&spec.Template.Spec)
}

func defaultServiceSpec(spec *corev1.ServiceSpec) {
	if spec.Type == "" {
		spec.Type = corev1.ServiceTypeClusterIP
	}
	if spec.SessionAffinity == "" {
		spec.SessionAffinity = corev1.ServiceAffinityNone
	}
	for i := range spec.Ports {
		sp := &spec.Ports[i]
		if sp.Protocol == "" {
			sp.Protocol = corev1.ProtocolTCP
		}
		if sp.TargetPort.Type == intstr.Int && sp.TargetPort.IntVal == 0 {
			sp.TargetPort = intstr.FromInt32(sp.Port)
		}
	}
	if spec.Type == corev1.ServiceTypeExternalName {
		return
	}
	if spec.Type == corev1.ServiceTypeNodePort || spec.Type == corev1.ServiceTypeLoadBalancer {
		if spec.ExternalTrafficPolicy == "" {
			spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyCluster
		}
	}
	if spec.Type == corev1.ServiceTypeLoadBalancer && spec.AllocateLoadBalancerNodePorts == nil {
		spec.AllocateLoadBalancerNodePorts = ptr(true)
	}
	if spec.InternalTrafficPolicy == nil {
		spec.InternalTrafficPolicy = ptr(corev1.ServiceInternalTrafficPolicyCluster)
	}
	if spec.IPFamilyPolicy == nil {
		spec.IPFamilyPolicy = ptr(corev1.IPFamilyPolicySingleStack)
	}
	if len(spec.IPFamilies) == 0 {
		spec.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol}
	}
}

func defaultNetworkPolicySpec(spec *networkingv1.NetworkPolicySpec) {
	if len(spec.PolicyTypes) == 0 {
		spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
		if len(spec.Egress) > 0 {
			spec.PolicyTypes = append(spec.PolicyTypes, networkingv1.PolicyTypeEgress)
		}
	}
	defaultPorts := func(ports []networkingv1.NetworkPolicyPort) {
		for i := range ports {
			if ports[i].Protocol == nil {
				ports[i].Protocol = ptr(corev1.ProtocolTCP)
			}
		}
	}
	for i := range spec.Ingress {
		defaultPorts(spec.Ingress[i].Ports)
	}
	for i := range spec.Egress {
		defaultPorts(spec.Egress[i].Ports)
	}
}

func ptr[T any](v T) *T { return &v }
