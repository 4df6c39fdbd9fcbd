package manifest

import (
	"errors"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func statefulSet(mut func(*appsv1.StatefulSet)) *appsv1.StatefulSet {
	s := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "shop"},
		Spec: appsv1.StatefulSetSpec{
			Replicas:    ptr(int32(3)),
			ServiceName: "db",
			Selector:    &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "db"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "db", Ports: []corev1.ContainerPort{{ContainerPort: 5432}}}}},
			},
		},
	}
	if mut != nil {
		mut(s)
	}
	return s
}

func TestValidateStatefulSet(t *testing.T) {
	tests := []struct {
		name string
		obj  *appsv1.StatefulSet
		want []string
	}{
		{"ok", statefulSet(nil), nil},
		{"ok after defaulting", func() *appsv1.StatefulSet { s := statefulSet(nil); Default(s); return s }(), nil},
		{"parallel, OnDelete, zero replicas", statefulSet(func(s *appsv1.StatefulSet) {
			s.Spec.PodManagementPolicy = appsv1.ParallelPodManagement
			s.Spec.UpdateStrategy.Type = appsv1.OnDeleteStatefulSetStrategyType
			s.Spec.Replicas = ptr(int32(0))
		}), nil},
		{"name must be a DNS label", statefulSet(func(s *appsv1.StatefulSet) { s.Name = "db.v1" }),
			[]string{`metadata.name: Invalid value: "db.v1": must not contain dots; a StatefulSet's pods are named <name>-<ordinal> and take that as their hostname, a DNS label`}},
		{"serviceName required", statefulSet(func(s *appsv1.StatefulSet) { s.Spec.ServiceName = "" }),
			[]string{`spec.serviceName: Required value`}},
		{"serviceName invalid", statefulSet(func(s *appsv1.StatefulSet) { s.Spec.ServiceName = "DB" }),
			[]string{`spec.serviceName: Invalid value: "DB"`}},
		{"negative replicas", statefulSet(func(s *appsv1.StatefulSet) { s.Spec.Replicas = ptr(int32(-1)) }),
			[]string{`spec.replicas: Invalid value: -1: must be greater than or equal to 0`}},
		{"selector required", statefulSet(func(s *appsv1.StatefulSet) { s.Spec.Selector = nil }),
			[]string{`spec.selector: Required value`}},
		{"empty selector", statefulSet(func(s *appsv1.StatefulSet) { s.Spec.Selector = &metav1.LabelSelector{} }),
			[]string{`spec.selector: Invalid value: {}: empty selector is invalid for statefulset`}},
		{"selector must match template", statefulSet(func(s *appsv1.StatefulSet) { s.Spec.Template.Labels = map[string]string{"app": "web"} }),
			[]string{"spec.template.metadata.labels: Invalid value: {\"app\":\"web\"}: `selector` does not match template `labels`"}},
		{"restartPolicy must be Always", statefulSet(func(s *appsv1.StatefulSet) { s.Spec.Template.Spec.RestartPolicy = corev1.RestartPolicyNever }),
			[]string{`spec.template.spec.restartPolicy: Unsupported value: "Never": supported values: "Always"`}},
		{"pod template checked", statefulSet(func(s *appsv1.StatefulSet) { s.Spec.Template.Spec.Containers = nil }),
			[]string{`spec.template.spec.containers: Required value`}},
		{"podManagementPolicy", statefulSet(func(s *appsv1.StatefulSet) { s.Spec.PodManagementPolicy = "Random" }),
			[]string{`spec.podManagementPolicy: Unsupported value: "Random": supported values: "OrderedReady", "Parallel"`}},
		{"updateStrategy", statefulSet(func(s *appsv1.StatefulSet) { s.Spec.UpdateStrategy.Type = "Recreate" }),
			[]string{`spec.updateStrategy.type: Unsupported value: "Recreate"`}},
		{"rollingUpdate with OnDelete", statefulSet(func(s *appsv1.StatefulSet) {
			s.Spec.UpdateStrategy = appsv1.StatefulSetUpdateStrategy{Type: appsv1.OnDeleteStatefulSetStrategyType,
				RollingUpdate: &appsv1.RollingUpdateStatefulSetStrategy{Partition: ptr(int32(-1)), MaxUnavailable: ptr(intstr.FromInt32(0))}}
		}), []string{`spec.updateStrategy.rollingUpdate: Forbidden`, `spec.updateStrategy.rollingUpdate.partition: Invalid value: -1`,
			`spec.updateStrategy.rollingUpdate.maxUnavailable: Invalid value: 0: must be greater than 0`}},
		{"negative ordinals.start", statefulSet(func(s *appsv1.StatefulSet) { s.Spec.Ordinals = &appsv1.StatefulSetOrdinals{Start: -2} }),
			[]string{`spec.ordinals.start: Invalid value: -2`}},
		{"retention policy", statefulSet(func(s *appsv1.StatefulSet) {
			s.Spec.PersistentVolumeClaimRetentionPolicy = &appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy{WhenDeleted: "Keep"}
		}), []string{`spec.persistentVolumeClaimRetentionPolicy.whenDeleted: Unsupported value: "Keep"`}},
		{"claim template name", statefulSet(func(s *appsv1.StatefulSet) {
			s.Spec.VolumeClaimTemplates = []corev1.PersistentVolumeClaim{{}}
		}), []string{`spec.volumeClaimTemplates[0].metadata.name: Required value`}},
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

func TestDefaultStatefulSet(t *testing.T) {
	s := statefulSet(func(s *appsv1.StatefulSet) { s.Namespace, s.Spec.Replicas = "", nil })
	Default(s)
	if s.APIVersion != "apps/v1" || s.Kind != "StatefulSet" || s.Namespace != "default" {
		t.Errorf("type meta %v namespace %q", s.TypeMeta, s.Namespace)
	}
	sp := s.Spec
	if *sp.Replicas != 1 || sp.PodManagementPolicy != appsv1.OrderedReadyPodManagement ||
		sp.UpdateStrategy.Type != appsv1.RollingUpdateStatefulSetStrategyType || *sp.UpdateStrategy.RollingUpdate.Partition != 0 ||
		*sp.RevisionHistoryLimit != 10 || sp.PersistentVolumeClaimRetentionPolicy.WhenDeleted != appsv1.RetainPersistentVolumeClaimRetentionPolicyType ||
		sp.PersistentVolumeClaimRetentionPolicy.WhenScaled != appsv1.RetainPersistentVolumeClaimRetentionPolicyType {
		t.Errorf("spec %+v", sp)
	}
	if ps := sp.Template.Spec; ps.RestartPolicy != corev1.RestartPolicyAlways || ps.DNSPolicy != corev1.DNSClusterFirst ||
		ps.Containers[0].Ports[0].Protocol != corev1.ProtocolTCP {
		t.Errorf("pod template not defaulted: %+v", ps)
	}
	// OnDelete gets no rollingUpdate; set values stay.
	s = statefulSet(func(s *appsv1.StatefulSet) {
		s.Spec.UpdateStrategy.Type = appsv1.OnDeleteStatefulSetStrategyType
		s.Spec.PodManagementPolicy = appsv1.ParallelPodManagement
	})
	Default(s)
	if s.Spec.UpdateStrategy.RollingUpdate != nil || s.Spec.PodManagementPolicy != appsv1.ParallelPodManagement || *s.Spec.Replicas != 3 {
		t.Errorf("spec %+v", s.Spec)
	}
}

func TestDecodeStatefulSet(t *testing.T) {
	objs, err := Decode([]byte(`apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: shop}
spec:
  serviceName: db
  replicas: 2
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers: [{name: db, image: podnet/workload}]
`), "s.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s, ok := objs[0].(*appsv1.StatefulSet)
	if !ok || s.Spec.ServiceName != "db" || *s.Spec.Replicas != 2 || KindOf(s) != "StatefulSet" || !IsNamespaced("StatefulSet") {
		t.Fatalf("decoded %#v", objs[0])
	}
	_, err = Decode([]byte(`apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceNmae: db
`), "s.yaml")
	if err == nil || !strings.Contains(err.Error(), `s.yaml:5: document 1 (StatefulSet "db"): unknown field "spec.serviceNmae"`) {
		t.Errorf("strict decoding: %v", err)
	}
	// KindOf by Go type
	if k := KindOf(&appsv1.StatefulSet{}); k != "StatefulSet" {
		t.Errorf("KindOf = %q", k)
	}
}
