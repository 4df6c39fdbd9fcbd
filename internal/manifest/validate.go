package manifest

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metavalidation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// NodePort range the lab allocates from, as kube-apiserver's default
// --service-node-port-range.
const (
	NodePortMin = 30000
	NodePortMax = 32767
)

// InvalidError is what Validate returns: every problem found in one object, each a
// *field.Error naming the field path.
type InvalidError struct {
	Kind, Namespace, Name string
	Errors                field.ErrorList
}

// Error lists the problems one per line, each as `Kind "name" is invalid: problem`.
func (e *InvalidError) Error() string {
	prefix := describe(e.Kind, e.Name) + " is invalid: "
	lines := make([]string, len(e.Errors))
	for i, fe := range e.Errors {
		lines[i] = prefix + fe.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap returns the individual *field.Error problems.
func (e *InvalidError) Unwrap() []error {
	out := make([]error, len(e.Errors))
	for i, fe := range e.Errors {
		out[i] = fe
	}
	return out
}

// Validate checks obj as kube-apiserver would on create, for the fields the lab relies
// on. It accepts objects before or after Default (fields Default fills may be empty).
// It returns nil or an *InvalidError.
func Validate(obj runtime.Object) error {
	var errs field.ErrorList
	switch o := obj.(type) {
	case *corev1.Namespace:
		errs = validateMeta(&o.ObjectMeta, false, validation.IsDNS1123Label)
	case *corev1.Pod:
		errs = validateMeta(&o.ObjectMeta, true, validation.IsDNS1123Subdomain)
		errs = append(errs, validatePodSpec(&o.Spec, field.NewPath("spec"))...)
	case *appsv1.Deployment:
		errs = validateMeta(&o.ObjectMeta, true, validation.IsDNS1123Subdomain)
		errs = append(errs, validateDeploymentSpec(&o.Spec, field.NewPath("spec"))...)
	case *appsv1.StatefulSet:
		// Its pods are named <name>-<ordinal> and take that as their hostname, a DNS label.
		errs = validateMeta(&o.ObjectMeta, true, func(name string) []string {
			if msgs := validation.IsDNS1123Label(name); len(msgs) > 0 {
				return append(msgs, "a StatefulSet's pods are named <name>-<ordinal> and take that as their hostname, a DNS label")
			}
			return nil
		})
		errs = append(errs, validateStatefulSetSpec(&o.Spec, field.NewPath("spec"))...)
	case *corev1.Service:
		errs = validateMeta(&o.ObjectMeta, true, validation.IsDNS1035Label)
		errs = append(errs, validateServiceSpec(&o.Spec, field.NewPath("spec"))...)
	case *networkingv1.NetworkPolicy:
		errs = validateMeta(&o.ObjectMeta, true, validation.IsDNS1123Subdomain)
		errs = append(errs, validateNetworkPolicySpec(&o.Spec, field.NewPath("spec"))...)
	default:
		return fmt.Errorf("unsupported object type %T; supported kinds: %s", obj, strings.Join(SupportedKinds(), ", "))
	}
	if len(errs) == 0 {
		return nil
	}
	ns, name := KeyOf(obj)
	return &InvalidError{Kind: KindOf(obj), Namespace: ns, Name: name, Errors: errs}
}

// invalid makes one error for a value from the messages of an apimachinery check.
func invalid(p *field.Path, value any, msgs []string) field.ErrorList {
	if len(msgs) == 0 {
		return nil
	}
	return field.ErrorList{field.Invalid(p, value, strings.Join(msgs, "; "))}
}

func oneOf[T ~string](p *field.Path, value T, allowEmpty bool, allowed ...T) field.ErrorList {
	if value == "" && allowEmpty {
		return nil
	}
	for _, a := range allowed {
		if value == a {
			return nil
		}
	}
	strs := make([]string, len(allowed))
	for i, a := range allowed {
		strs[i] = string(a)
	}
	if value == "" {
		return field.ErrorList{field.Required(p, "supported values: "+strings.Join(strs, ", "))}
	}
	return field.ErrorList{field.NotSupported(p, value, strs)}
}

func validateMeta(m *metav1.ObjectMeta, namespaced bool, nameCheck func(string) []string) field.ErrorList {
	var errs field.ErrorList
	p := field.NewPath("metadata")
	switch {
	case m.Name == "" && m.GenerateName != "":
		errs = append(errs, field.Required(p.Child("name"), "generateName is not supported; give a name"))
	case m.Name == "":
		errs = append(errs, field.Required(p.Child("name"), "name or generateName is required"))
	default:
		errs = append(errs, invalid(p.Child("name"), m.Name, nameCheck(m.Name))...)
	}
	if namespaced {
		if m.Namespace != "" {
			errs = append(errs, invalid(p.Child("namespace"), m.Namespace, validation.IsDNS1123Label(m.Namespace))...)
		}
	} else if m.Namespace != "" {
		errs = append(errs, field.Forbidden(p.Child("namespace"), "not allowed on this type"))
	}
	errs = append(errs, metavalidation.ValidateLabels(m.Labels, p.Child("labels"))...)
	errs = append(errs, apivalidation.ValidateAnnotations(m.Annotations, p.Child("annotations"))...)
	return errs
}

func validateNonNegative(p *field.Path, v *int64) field.ErrorList {
	if v != nil && *v < 0 {
		return field.ErrorList{field.Invalid(p, *v, apivalidation.IsNegativeErrorMsg)}
	}
	return nil
}

var protocols = []corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP}

func protocolOrTCP(p corev1.Protocol) corev1.Protocol {
	if p == "" {
		return corev1.ProtocolTCP
	}
	return p
}

func validatePodSpec(spec *corev1.PodSpec, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if len(spec.Containers) == 0 {
		errs = append(errs, field.Required(p.Child("containers"), "must have at least one container"))
	}
	names := map[string]bool{}
	ports := map[string]bool{} // "80/TCP": containers share the pod's network namespace
	check := func(cs []corev1.Container, cp *field.Path) {
		for i := range cs {
			errs = append(errs, validateContainer(&cs[i], cp.Index(i), spec.HostNetwork, names, ports)...)
		}
	}
	check(spec.InitContainers, p.Child("initContainers"))
	check(spec.Containers, p.Child("containers"))

	errs = append(errs, oneOf(p.Child("restartPolicy"), spec.RestartPolicy, true,
		corev1.RestartPolicyAlways, corev1.RestartPolicyOnFailure, corev1.RestartPolicyNever)...)
	errs = append(errs, oneOf(p.Child("dnsPolicy"), spec.DNSPolicy, true,
		corev1.DNSClusterFirst, corev1.DNSClusterFirstWithHostNet, corev1.DNSDefault, corev1.DNSNone)...)
	if spec.DNSPolicy == corev1.DNSNone && spec.DNSConfig == nil {
		errs = append(errs, field.Required(p.Child("dnsConfig"), "must provide `dnsConfig` when `dnsPolicy` is None"))
	}
	if spec.DNSConfig != nil {
		for i, ns := range spec.DNSConfig.Nameservers {
			errs = append(errs, validation.IsValidIP(p.Child("dnsConfig", "nameservers").Index(i), ns)...)
		}
		for i, s := range spec.DNSConfig.Searches {
			errs = append(errs, invalid(p.Child("dnsConfig", "searches").Index(i), s,
				validation.IsDNS1123Subdomain(strings.TrimSuffix(s, ".")))...)
		}
	}
	if spec.NodeName != "" {
		errs = append(errs, invalid(p.Child("nodeName"), spec.NodeName, validation.IsDNS1123Subdomain(spec.NodeName))...)
	}
	if spec.Hostname != "" {
		errs = append(errs, invalid(p.Child("hostname"), spec.Hostname, validation.IsDNS1123Label(spec.Hostname))...)
	}
	if spec.Subdomain != "" {
		errs = append(errs, invalid(p.Child("subdomain"), spec.Subdomain, validation.IsDNS1123Label(spec.Subdomain))...)
	}
	errs = append(errs, validateNonNegative(p.Child("terminationGracePeriodSeconds"), spec.TerminationGracePeriodSeconds)...)
	return errs
}

func validateContainer(c *corev1.Container, p *field.Path, hostNetwork bool, names, podPorts map[string]bool) field.ErrorList {
	var errs field.ErrorList
	switch {
	case c.Name == "":
		errs = append(errs, field.Required(p.Child("name"), ""))
	case names[c.Name]:
		errs = append(errs, field.Duplicate(p.Child("name"), c.Name))
	default:
		errs = append(errs, invalid(p.Child("name"), c.Name, validation.IsDNS1123Label(c.Name))...)
	}
	names[c.Name] = true

	portNames := map[string]bool{}
	for i, port := range c.Ports {
		pp := p.Child("ports").Index(i)
		if port.Name != "" {
			if portNames[port.Name] {
				errs = append(errs, field.Duplicate(pp.Child("name"), port.Name))
			} else {
				errs = append(errs, invalid(pp.Child("name"), port.Name, validation.IsValidPortName(port.Name))...)
			}
			portNames[port.Name] = true
		}
		if port.ContainerPort == 0 {
			errs = append(errs, field.Required(pp.Child("containerPort"), ""))
		} else {
			errs = append(errs, invalid(pp.Child("containerPort"), port.ContainerPort, validation.IsValidPortNum(int(port.ContainerPort)))...)
		}
		if port.HostPort != 0 {
			errs = append(errs, invalid(pp.Child("hostPort"), port.HostPort, validation.IsValidPortNum(int(port.HostPort)))...)
			if hostNetwork && port.HostPort != port.ContainerPort {
				errs = append(errs, field.Invalid(pp.Child("hostPort"), port.HostPort, "must match `containerPort` when `hostNetwork` is true"))
			}
		}
		if port.HostIP != "" {
			errs = append(errs, validation.IsValidIP(pp.Child("hostIP"), port.HostIP)...)
		}
		errs = append(errs, oneOf(pp.Child("protocol"), port.Protocol, true, protocols...)...)
		if port.ContainerPort != 0 {
			key := fmt.Sprintf("%d/%s", port.ContainerPort, protocolOrTCP(port.Protocol))
			if podPorts[key] {
				errs = append(errs, field.Duplicate(pp.Child("containerPort"), key))
			}
			podPorts[key] = true
		}
	}
	return errs
}

func validateDeploymentSpec(spec *appsv1.DeploymentSpec, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if spec.Replicas != nil && *spec.Replicas < 0 {
		errs = append(errs, field.Invalid(p.Child("replicas"), *spec.Replicas, apivalidation.IsNegativeErrorMsg))
	}
	errs = append(errs, validateSelectorAndTemplate(spec.Selector, &spec.Template, p, "deployment")...)
	errs = append(errs, oneOf(p.Child("strategy", "type"), spec.Strategy.Type, true,
		appsv1.RecreateDeploymentStrategyType, appsv1.RollingUpdateDeploymentStrategyType)...)
	if spec.Strategy.Type == appsv1.RecreateDeploymentStrategyType && spec.Strategy.RollingUpdate != nil {
		errs = append(errs, field.Forbidden(p.Child("strategy", "rollingUpdate"), "may not be specified when strategy `type` is 'Recreate'"))
	}
	if spec.MinReadySeconds < 0 {
		errs = append(errs, field.Invalid(p.Child("minReadySeconds"), spec.MinReadySeconds, apivalidation.IsNegativeErrorMsg))
	}
	return errs
}

// validateSelectorAndTemplate checks a workload's selector, that it selects the pod template's
// labels, and the pod template (whose restartPolicy must be Always), as kube-apiserver does.
func validateSelectorAndTemplate(selector *metav1.LabelSelector, template *corev1.PodTemplateSpec, p *field.Path, what string) field.ErrorList {
	var errs field.ErrorList
	spec := struct {
		Selector *metav1.LabelSelector
		Template *corev1.PodTemplateSpec
	}{selector, template} // so the checks read as they do for a Deployment's spec
	tp := p.Child("template")
	switch {
	case spec.Selector == nil:
		errs = append(errs, field.Required(p.Child("selector"), ""))
	case len(spec.Selector.MatchLabels) == 0 && len(spec.Selector.MatchExpressions) == 0:
		errs = append(errs, field.Invalid(p.Child("selector"), spec.Selector, "empty selector is invalid for "+what))
	default:
		selErrs := metavalidation.ValidateLabelSelector(spec.Selector, metavalidation.LabelSelectorValidationOptions{}, p.Child("selector"))
		errs = append(errs, selErrs...)
		if len(selErrs) == 0 {
			sel, err := metav1.LabelSelectorAsSelector(spec.Selector)
			if err != nil {
				errs = append(errs, field.Invalid(p.Child("selector"), spec.Selector, err.Error()))
			} else if !sel.Matches(labels.Set(spec.Template.Labels)) {
				errs = append(errs, field.Invalid(tp.Child("metadata", "labels"), spec.Template.Labels, "`selector` does not match template `labels`"))
			}
		}
	}
	errs = append(errs, metavalidation.ValidateLabels(spec.Template.Labels, tp.Child("metadata", "labels"))...)
	errs = append(errs, apivalidation.ValidateAnnotations(spec.Template.Annotations, tp.Child("metadata", "annotations"))...)
	errs = append(errs, validatePodSpec(&spec.Template.Spec, tp.Child("spec"))...)
	errs = append(errs, oneOf(tp.Child("spec", "restartPolicy"), spec.Template.Spec.RestartPolicy, true, corev1.RestartPolicyAlways)...)
	return errs
}

func validateStatefulSetSpec(spec *appsv1.StatefulSetSpec, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if spec.Replicas != nil && *spec.Replicas < 0 {
		errs = append(errs, field.Invalid(p.Child("replicas"), *spec.Replicas, apivalidation.IsNegativeErrorMsg))
	}
	// The pods' subdomain: the headless Service that gives them DNS names.
	if spec.ServiceName == "" {
		errs = append(errs, field.Required(p.Child("serviceName"), "the name of the headless Service that governs the pods' DNS names"))
	} else {
		errs = append(errs, invalid(p.Child("serviceName"), spec.ServiceName, validation.IsDNS1123Label(spec.ServiceName))...)
	}
	errs = append(errs, oneOf(p.Child("podManagementPolicy"), spec.PodManagementPolicy, true,
		appsv1.OrderedReadyPodManagement, appsv1.ParallelPodManagement)...)
	us := p.Child("updateStrategy")
	errs = append(errs, oneOf(us.Child("type"), spec.UpdateStrategy.Type, true,
		appsv1.RollingUpdateStatefulSetStrategyType, appsv1.OnDeleteStatefulSetStrategyType)...)
	if ru := spec.UpdateStrategy.RollingUpdate; ru != nil {
		if spec.UpdateStrategy.Type == appsv1.OnDeleteStatefulSetStrategyType {
			errs = append(errs, field.Forbidden(us.Child("rollingUpdate"), "only allowed for updateStrategy 'RollingUpdate'"))
		}
		if ru.Partition != nil && *ru.Partition < 0 {
			errs = append(errs, field.Invalid(us.Child("rollingUpdate", "partition"), *ru.Partition, apivalidation.IsNegativeErrorMsg))
		}
		if mu := ru.MaxUnavailable; mu != nil {
			mp := us.Child("rollingUpdate", "maxUnavailable")
			switch {
			case mu.Type == intstr.Int && mu.IntVal < 1:
				errs = append(errs, field.Invalid(mp, mu.IntVal, "must be greater than 0"))
			case mu.Type == intstr.String:
				pct, err := strconv.Atoi(strings.TrimSuffix(mu.StrVal, "%"))
				if !strings.HasSuffix(mu.StrVal, "%") || err != nil || pct < 1 || pct > 100 {
					errs = append(errs, field.Invalid(mp, mu.StrVal, "must be an integer greater than 0 or a percentage between 1% and 100%"))
				}
			}
		}
	}
	if spec.RevisionHistoryLimit != nil && *spec.RevisionHistoryLimit < 0 {
		errs = append(errs, field.Invalid(p.Child("revisionHistoryLimit"), *spec.RevisionHistoryLimit, apivalidation.IsNegativeErrorMsg))
	}
	if spec.MinReadySeconds < 0 {
		errs = append(errs, field.Invalid(p.Child("minReadySeconds"), spec.MinReadySeconds, apivalidation.IsNegativeErrorMsg))
	}
	if spec.Ordinals != nil && spec.Ordinals.Start < 0 {
		errs = append(errs, field.Invalid(p.Child("ordinals", "start"), spec.Ordinals.Start, apivalidation.IsNegativeErrorMsg))
	}
	if rp := spec.PersistentVolumeClaimRetentionPolicy; rp != nil {
		rpp := p.Child("persistentVolumeClaimRetentionPolicy")
		errs = append(errs, oneOf(rpp.Child("whenDeleted"), rp.WhenDeleted, true,
			appsv1.RetainPersistentVolumeClaimRetentionPolicyType, appsv1.DeletePersistentVolumeClaimRetentionPolicyType)...)
		errs = append(errs, oneOf(rpp.Child("whenScaled"), rp.WhenScaled, true,
			appsv1.RetainPersistentVolumeClaimRetentionPolicyType, appsv1.DeletePersistentVolumeClaimRetentionPolicyType)...)
	}
	for i, c := range spec.VolumeClaimTemplates {
		cp := p.Child("volumeClaimTemplates").Index(i)
		if c.Name == "" {
			errs = append(errs, field.Required(cp.Child("metadata", "name"), ""))
		} else {
			errs = append(errs, invalid(cp.Child("metadata", "name"), c.Name, validation.IsDNS1123Subdomain(c.Name))...)
		}
	}
	errs = append(errs, validateSelectorAndTemplate(spec.Selector, &spec.Template, p, "statefulset")...)
	return errs
}

// validateIPv4 checks an address field of the single-stack IPv4 lab.
func validateIPv4(p *field.Path, value string) field.ErrorList {
	if errs := validation.IsValidIP(p, value); len(errs) > 0 {
		return errs
	}
	if a, _ := netip.ParseAddr(value); !a.Is4() {
		return field.ErrorList{field.Invalid(p, value, "must be an IPv4 address: the cluster is single-stack IPv4")}
	}
	return nil
}

func validateServiceSpec(spec *corev1.ServiceSpec, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	errs = append(errs, oneOf(p.Child("type"), spec.Type, true,
		corev1.ServiceTypeClusterIP, corev1.ServiceTypeNodePort, corev1.ServiceTypeLoadBalancer, corev1.ServiceTypeExternalName)...)
	typ := spec.Type
	if typ == "" {
		typ = corev1.ServiceTypeClusterIP
	}
	external := typ == corev1.ServiceTypeNodePort || typ == corev1.ServiceTypeLoadBalancer

	if typ == corev1.ServiceTypeExternalName {
		name := strings.TrimSuffix(spec.ExternalName, ".")
		if name == "" {
			errs = append(errs, field.Required(p.Child("externalName"), "required for ExternalName services"))
		} else {
			errs = append(errs, invalid(p.Child("externalName"), spec.ExternalName, validation.IsDNS1123Subdomain(name))...)
		}
		if spec.ClusterIP != "" {
			errs = append(errs, field.Forbidden(p.Child("clusterIP"), "must be empty for ExternalName services"))
		}
		if len(spec.ClusterIPs) > 0 {
			errs = append(errs, field.Forbidden(p.Child("clusterIPs"), "must be empty for ExternalName services"))
		}
		if len(spec.IPFamilies) > 0 {
			errs = append(errs, field.Forbidden(p.Child("ipFamilies"), "must be empty for ExternalName services"))
		}
		if spec.IPFamilyPolicy != nil {
			errs = append(errs, field.Forbidden(p.Child("ipFamilyPolicy"), "must not be set for ExternalName services"))
		}
	}

	headless := spec.ClusterIP == corev1.ClusterIPNone
	switch {
	case spec.ClusterIP == "" || typ == corev1.ServiceTypeExternalName:
	case headless:
		if external {
			errs = append(errs, field.Invalid(p.Child("clusterIP"), spec.ClusterIP, fmt.Sprintf("may not be set to 'None' for %s services", typ)))
		}
	default:
		errs = append(errs, validateIPv4(p.Child("clusterIP"), spec.ClusterIP)...)
	}
	if typ != corev1.ServiceTypeExternalName && len(spec.ClusterIPs) > 0 {
		cp := p.Child("clusterIPs")
		if len(spec.ClusterIPs) > 1 {
			errs = append(errs, field.TooMany(cp, len(spec.ClusterIPs), 1))
		}
		if spec.ClusterIP != "" && spec.ClusterIPs[0] != spec.ClusterIP {
			errs = append(errs, field.Invalid(cp.Index(0), spec.ClusterIPs[0], "must match `clusterIP`"))
		} else if spec.ClusterIPs[0] != corev1.ClusterIPNone {
			errs = append(errs, validateIPv4(cp.Index(0), spec.ClusterIPs[0])...)
		}
	}

	if len(spec.Ports) == 0 && !headless && typ != corev1.ServiceTypeExternalName {
		errs = append(errs, field.Required(p.Child("ports"), ""))
	}
	portNames := map[string]bool{}
	portKeys := map[string]bool{}
	nodePortKeys := map[string]bool{}
	for i, sp := range spec.Ports {
		pp := p.Child("ports").Index(i)
		switch {
		case sp.Name == "" && len(spec.Ports) > 1:
			errs = append(errs, field.Required(pp.Child("name"), "required when a Service has more than one port"))
		case sp.Name == "":
		case portNames[sp.Name]:
			errs = append(errs, field.Duplicate(pp.Child("name"), sp.Name))
		default:
			errs = append(errs, invalid(pp.Child("name"), sp.Name, validation.IsDNS1123Label(sp.Name))...)
		}
		portNames[sp.Name] = true
		errs = append(errs, invalid(pp.Child("port"), sp.Port, validation.IsValidPortNum(int(sp.Port)))...)
		errs = append(errs, oneOf(pp.Child("protocol"), sp.Protocol, true, protocols...)...)
		errs = append(errs, validateTargetPort(pp.Child("targetPort"), sp.TargetPort)...)
		key := fmt.Sprintf("%d/%s", sp.Port, protocolOrTCP(sp.Protocol))
		if sp.Port != 0 {
			if portKeys[key] {
				errs = append(errs, field.Duplicate(pp.Child("port"), key))
			}
			portKeys[key] = true
		}
		if sp.NodePort != 0 {
			switch {
			case !external:
				errs = append(errs, field.Forbidden(pp.Child("nodePort"), fmt.Sprintf("may not be used when `type` is '%s'", typ)))
			case sp.NodePort < NodePortMin || sp.NodePort > NodePortMax:
				errs = append(errs, field.Invalid(pp.Child("nodePort"), sp.NodePort,
					fmt.Sprintf("must be between %d and %d, inclusive (the NodePort range)", NodePortMin, NodePortMax)))
			default:
				nk := fmt.Sprintf("%d/%s", sp.NodePort, protocolOrTCP(sp.Protocol))
				if nodePortKeys[nk] {
					errs = append(errs, field.Duplicate(pp.Child("nodePort"), nk))
				}
				nodePortKeys[nk] = true
			}
		}
	}

	errs = append(errs, metavalidation.ValidateLabels(spec.Selector, p.Child("selector"))...)
	errs = append(errs, oneOf(p.Child("sessionAffinity"), spec.SessionAffinity, true,
		corev1.ServiceAffinityNone, corev1.ServiceAffinityClientIP)...)
	if spec.SessionAffinity == corev1.ServiceAffinityClientIP && spec.SessionAffinityConfig != nil &&
		spec.SessionAffinityConfig.ClientIP != nil && spec.SessionAffinityConfig.ClientIP.TimeoutSeconds != nil {
		if t := *spec.SessionAffinityConfig.ClientIP.TimeoutSeconds; t <= 0 || t > 86400 {
			errs = append(errs, field.Invalid(p.Child("sessionAffinityConfig", "clientIP", "timeoutSeconds"), t, "must be greater than 0 and less than 86400"))
		}
	}
	if spec.ExternalTrafficPolicy != "" {
		errs = append(errs, oneOf(p.Child("externalTrafficPolicy"), spec.ExternalTrafficPolicy, false,
			corev1.ServiceExternalTrafficPolicyCluster, corev1.ServiceExternalTrafficPolicyLocal)...)
		if !external && len(spec.ExternalIPs) == 0 {
			errs = append(errs, field.Forbidden(p.Child("externalTrafficPolicy"), "may only be set for externally-accessible services"))
		}
	}
	if spec.InternalTrafficPolicy != nil {
		errs = append(errs, oneOf(p.Child("internalTrafficPolicy"), *spec.InternalTrafficPolicy, false,
			corev1.ServiceInternalTrafficPolicyCluster, corev1.ServiceInternalTrafficPolicyLocal)...)
	}
	if typ != corev1.ServiceTypeExternalName {
		errs = append(errs, validateIPFamilies(spec, p)...)
	}
	for i, ip := range spec.ExternalIPs {
		errs = append(errs, validateIPv4(p.Child("externalIPs").Index(i), ip)...)
	}
	lb := typ == corev1.ServiceTypeLoadBalancer
	if spec.LoadBalancerIP != "" {
		if !lb {
			errs = append(errs, field.Forbidden(p.Child("loadBalancerIP"), "may only be used when `type` is 'LoadBalancer'"))
		} else {
			errs = append(errs, validateIPv4(p.Child("loadBalancerIP"), spec.LoadBalancerIP)...)
		}
	}
	for i, r := range spec.LoadBalancerSourceRanges {
		rp := p.Child("loadBalancerSourceRanges").Index(i)
		if !lb {
			errs = append(errs, field.Forbidden(rp, "may only be used when `type` is 'LoadBalancer'"))
			break
		}
		if _, err := netip.ParsePrefix(strings.TrimSpace(r)); err != nil {
			errs = append(errs, field.Invalid(rp, r, "must be a CIDR, e.g. 192.0.2.0/24"))
		}
	}
	if hc := spec.HealthCheckNodePort; hc != 0 {
		hp := p.Child("healthCheckNodePort")
		switch {
		case !lb || spec.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyLocal:
			errs = append(errs, field.Invalid(hp, hc, "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'"))
		case hc < NodePortMin || hc > NodePortMax:
			errs = append(errs, field.Invalid(hp, hc,
				fmt.Sprintf("must be between %d and %d, inclusive (the NodePort range)", NodePortMin, NodePortMax)))
		}
	}
	if spec.AllocateLoadBalancerNodePorts != nil && !lb {
		errs = append(errs, field.Forbidden(p.Child("allocateLoadBalancerNodePorts"), "may only be used when `type` is 'LoadBalancer'"))
	}
	return errs
}

func validateTargetPort(p *field.Path, tp intstr.IntOrString) field.ErrorList {
	if tp.Type == intstr.String {
		if tp.StrVal == "" {
			return field.ErrorList{field.Required(p, "")}
		}
		return invalid(p, tp.StrVal, validation.IsValidPortName(tp.StrVal))
	}
	if tp.IntVal == 0 { // unset: defaults to port
		return nil
	}
	return invalid(p, tp.IntVal, validation.IsValidPortNum(int(tp.IntVal)))
}

func validateIPFamilies(spec *corev1.ServiceSpec, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if spec.IPFamilyPolicy != nil {
		fp := p.Child("ipFamilyPolicy")
		errs = append(errs, oneOf(fp, *spec.IPFamilyPolicy, false,
			corev1.IPFamilyPolicySingleStack, corev1.IPFamilyPolicyPreferDualStack, corev1.IPFamilyPolicyRequireDualStack)...)
		if *spec.IPFamilyPolicy == corev1.IPFamilyPolicyRequireDualStack {
			errs = append(errs, field.Invalid(fp, *spec.IPFamilyPolicy, "the cluster is single-stack IPv4"))
		}
	}
	seen := map[corev1.IPFamily]bool{}
	for i, f := range spec.IPFamilies {
		ip := p.Child("ipFamilies").Index(i)
		switch {
		case f != corev1.IPv4Protocol && f != corev1.IPv6Protocol:
			errs = append(errs, field.NotSupported(ip, f, []string{string(corev1.IPv4Protocol), string(corev1.IPv6Protocol)}))
		case seen[f]:
			errs = append(errs, field.Duplicate(ip, f))
		case f == corev1.IPv6Protocol:
			errs = append(errs, field.Invalid(ip, f, "not configured on this cluster: the cluster is single-stack IPv4"))
		}
		seen[f] = true
	}
	return errs
}

func validateNetworkPolicySpec(spec *networkingv1.NetworkPolicySpec, p *field.Path) field.ErrorList {
	opts := metavalidation.LabelSelectorValidationOptions{}
	errs := metavalidation.ValidateLabelSelector(&spec.PodSelector, opts, p.Child("podSelector"))
	for i, rule := range spec.Ingress {
		rp := p.Child("ingress").Index(i)
		for j, port := range rule.Ports {
			errs = append(errs, validatePolicyPort(&port, rp.Child("ports").Index(j))...)
		}
		for j, peer := range rule.From {
			errs = append(errs, validatePeer(&peer, rp.Child("from").Index(j))...)
		}
	}
	for i, rule := range spec.Egress {
		rp := p.Child("egress").Index(i)
		for j, port := range rule.Ports {
			errs = append(errs, validatePolicyPort(&port, rp.Child("ports").Index(j))...)
		}
		for j, peer := range rule.To {
			errs = append(errs, validatePeer(&peer, rp.Child("to").Index(j))...)
		}
	}
	seen := map[networkingv1.PolicyType]bool{}
	for i, t := range spec.PolicyTypes {
		tp := p.Child("policyTypes").Index(i)
		if seen[t] {
			errs = append(errs, field.Duplicate(tp, t))
			continue
		}
		seen[t] = true
		errs = append(errs, oneOf(tp, t, false, networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress)...)
	}
	return errs
}

func validatePolicyPort(port *networkingv1.NetworkPolicyPort, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if port.Protocol != nil {
		errs = append(errs, oneOf(p.Child("protocol"), *port.Protocol, false, protocols...)...)
	}
	switch {
	case port.Port == nil:
		if port.EndPort != nil {
			errs = append(errs, field.Invalid(p.Child("endPort"), *port.EndPort, "may not be specified when `port` is not specified"))
		}
	case port.Port.Type == intstr.Int:
		errs = append(errs, invalid(p.Child("port"), port.Port.IntVal, validation.IsValidPortNum(int(port.Port.IntVal)))...)
		if port.EndPort != nil {
			if *port.EndPort < port.Port.IntVal {
				errs = append(errs, field.Invalid(p.Child("endPort"), *port.EndPort, "must be greater than or equal to `port`"))
			} else {
				errs = append(errs, invalid(p.Child("endPort"), *port.EndPort, validation.IsValidPortNum(int(*port.EndPort)))...)
			}
		}
	default:
		if port.Port.StrVal == "" {
			errs = append(errs, field.Required(p.Child("port"), ""))
		} else {
			errs = append(errs, invalid(p.Child("port"), port.Port.StrVal, validation.IsValidPortName(port.Port.StrVal))...)
		}
		if port.EndPort != nil {
			errs = append(errs, field.Invalid(p.Child("endPort"), *port.EndPort, "may not be specified when `port` is non-numeric"))
		}
	}
	return errs
}

func validatePeer(peer *networkingv1.NetworkPolicyPeer, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	opts := metavalidation.LabelSelectorValidationOptions{}
	if peer.PodSelector == nil && peer.NamespaceSelector == nil && peer.IPBlock == nil {
		return field.ErrorList{field.Required(p, "must specify a peer: podSelector, namespaceSelector or ipBlock")}
	}
	if peer.PodSelector != nil {
		errs = append(errs, metavalidation.ValidateLabelSelector(peer.PodSelector, opts, p.Child("podSelector"))...)
	}
	if peer.NamespaceSelector != nil {
		errs = append(errs, metavalidation.ValidateLabelSelector(peer.NamespaceSelector, opts, p.Child("namespaceSelector"))...)
	}
	if peer.IPBlock == nil {
		return errs
	}
	bp := p.Child("ipBlock")
	if peer.PodSelector != nil || peer.NamespaceSelector != nil {
		errs = append(errs, field.Forbidden(bp, "may not be combined with podSelector or namespaceSelector in one peer"))
	}
	if peer.IPBlock.CIDR == "" {
		return append(errs, field.Required(bp.Child("cidr"), ""))
	}
	cidr, err := netip.ParsePrefix(peer.IPBlock.CIDR)
	if err != nil {
		return append(errs, field.Invalid(bp.Child("cidr"), peer.IPBlock.CIDR, "must be a valid CIDR, e.g. 10.0.0.0/8"))
	}
	cidr = cidr.Masked()
	for i, ex := range peer.IPBlock.Except {
		ep := bp.Child("except").Index(i)
		e, err := netip.ParsePrefix(ex)
		switch {
		case err != nil:
			errs = append(errs, field.Invalid(ep, ex, "must be a valid CIDR, e.g. 10.1.0.0/16"))
		case e.Addr().Is4() != cidr.Addr().Is4() || e.Bits() <= cidr.Bits() || !cidr.Contains(e.Addr()):
			errs = append(errs, field.Invalid(ep, ex, "must be a strict subset of `cidr` "+strconv.Quote(peer.IPBlock.CIDR)))
		}
	}
	return errs
}
