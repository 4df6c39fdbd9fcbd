package lab

import (
	"reflect"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

func testSet(replicas int32, policy appsv1.PodManagementPolicyType) *appsv1.StatefulSet {
	p := int32(0)
	return &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "db", UID: types.UID("set-uid")},
		Spec: appsv1.StatefulSetSpec{
			Replicas:            &replicas,
			ServiceName:         "db-svc",
			PodManagementPolicy: policy,
			Selector:            &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}},
			UpdateStrategy: appsv1.StatefulSetUpdateStrategy{Type: appsv1.RollingUpdateStatefulSetStrategyType,
				RollingUpdate: &appsv1.RollingUpdateStatefulSetStrategy{Partition: &p}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "db"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "w", Image: "podnet/workload"}}},
			},
		},
	}
}

// readyPod is the pod of ordinal o, Running and Ready unless notReady.
func readyPod(s *appsv1.StatefulSet, o int, notReady bool) *corev1.Pod {
	p := newStatefulSetPod(s, o)
	p.Status.Phase = corev1.PodRunning
	st := corev1.ConditionTrue
	if notReady {
		st = corev1.ConditionFalse
	}
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: st}}
	return p
}

func TestNewStatefulSetPod(t *testing.T) {
	s := testSet(3, appsv1.OrderedReadyPodManagement)
	p := newStatefulSetPod(s, 2)
	if p.Name != "db-2" || p.Spec.Hostname != "db-2" || p.Spec.Subdomain != "db-svc" {
		t.Errorf("name %q hostname %q subdomain %q", p.Name, p.Spec.Hostname, p.Spec.Subdomain)
	}
	want := map[string]string{"app": "db", appsv1.StatefulSetPodNameLabel: "db-2", appsv1.PodIndexLabel: "2",
		appsv1.StatefulSetRevisionLabel: stsRevision(s)}
	if !reflect.DeepEqual(p.Labels, want) {
		t.Errorf("labels %v, want %v", p.Labels, want)
	}
	ref := metav1.GetControllerOf(p)
	if ref == nil || ref.Kind != "StatefulSet" || ref.Name != "db" || ref.UID != s.UID || ref.APIVersion != "apps/v1" {
		t.Errorf("controller ref %+v", ref)
	}
	if s.Spec.Template.Spec.Hostname != "" {
		t.Error("template changed")
	}
}

func TestPodOrdinal(t *testing.T) {
	for name, want := range map[string]int{"db-0": 0, "db-12": 12, "db-x": -1, "db-01": -1, "dbx-1": -1, "db-1-2": -1, "db": -1} {
		if got := stsPodOrdinal("db", name); got != want {
			t.Errorf("%s: %d, want %d", name, got, want)
		}
	}
}

func TestPlanStatefulSet(t *testing.T) {
	ordered := testSet(3, appsv1.OrderedReadyPodManagement)
	parallel := testSet(3, appsv1.ParallelPodManagement)
	terminating := func(p *corev1.Pod) *corev1.Pod { now := metav1.Now(); p.DeletionTimestamp = &now; return p }
	pods := func(ps ...*corev1.Pod) map[int]*corev1.Pod {
		m := map[int]*corev1.Pod{}
		for _, p := range ps {
			m[stsPodOrdinal("db", p.Name)] = p
		}
		return m
	}
	scaled := func(s *appsv1.StatefulSet, n int32) *appsv1.StatefulSet {
		s = s.DeepCopy()
		s.Spec.Replicas = &n
		return s
	}
	newTemplate := ordered.DeepCopy()
	newTemplate.Spec.Template.Labels["v"] = "2"
	for _, tc := range []struct {
		name string
		set  *appsv1.StatefulSet
		pods map[int]*corev1.Pod
		want stsAction
	}{
		{"ordered: first pod", ordered, pods(), stsAction{create: []int{0}}},
		{"ordered: waits for db-0 to be ready", ordered, pods(readyPod(ordered, 0, true)), stsAction{}},
		{"ordered: next once db-0 is ready", ordered, pods(readyPod(ordered, 0, false)), stsAction{create: []int{1}}},
		{"ordered: a deleted pod comes back", ordered, pods(readyPod(ordered, 0, false), readyPod(ordered, 2, false)), stsAction{create: []int{1}}},
		{"ordered: waits for a terminating pod", ordered, pods(readyPod(ordered, 0, false), terminating(readyPod(ordered, 1, false))), stsAction{}},
		{"parallel: all at once", parallel, pods(), stsAction{create: []int{0, 1, 2}}},
		{"parallel: missing ones", parallel, pods(readyPod(parallel, 1, true)), stsAction{create: []int{0, 2}}},
		{"ordered: scale in from the top", scaled(ordered, 1),
			pods(readyPod(ordered, 0, false), readyPod(ordered, 1, false), readyPod(ordered, 2, false)), stsAction{delete: []string{"db-2"}}},
		{"ordered: one at a time", scaled(ordered, 1),
			pods(readyPod(ordered, 0, false), readyPod(ordered, 1, false), terminating(readyPod(ordered, 2, false))), stsAction{}},
		{"parallel: scale in at once", scaled(parallel, 1),
			pods(readyPod(parallel, 0, false), readyPod(parallel, 1, false), readyPod(parallel, 2, false)), stsAction{delete: []string{"db-2", "db-1"}}},
		{"scale to zero", scaled(ordered, 0), pods(readyPod(ordered, 0, false)), stsAction{delete: []string{"db-0"}}},
		{"steady", ordered, pods(readyPod(ordered, 0, false), readyPod(ordered, 1, false), readyPod(ordered, 2, false)), stsAction{}},
		{"rolling update from the top", newTemplate,
			pods(readyPod(ordered, 0, false), readyPod(ordered, 1, false), readyPod(ordered, 2, false)), stsAction{delete: []string{"db-2"}}},
		{"rolling update continues", newTemplate,
			pods(readyPod(ordered, 0, false), readyPod(ordered, 1, false), readyPod(newTemplate, 2, false)), stsAction{delete: []string{"db-1"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := planStatefulSet(tc.set, tc.pods, nil)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestStsStatusAndPending(t *testing.T) {
	s := testSet(2, appsv1.OrderedReadyPodManagement)
	p0, p1 := readyPod(s, 0, false), readyPod(s, 1, true)
	p0.UID, p1.UID = "a", "b"
	st := stsStatus(s, map[int]*corev1.Pod{0: p0, 1: p1})
	if st.Replicas != 2 || st.ReadyReplicas != 1 || st.UpdatedReplicas != 2 || st.CurrentReplicas != 2 || st.UpdateRevision != stsRevision(s) {
		t.Errorf("status %+v", st)
	}
	other := readyPod(s, 0, false)
	other.Name, other.OwnerReferences = "other", nil
	if got := stsPending(s, []*corev1.Pod{p0, p1, other}); got != "pod ns/db-1 to be Running and Ready (phase Running)" {
		t.Errorf("pending: %q", got)
	}
	p1 = readyPod(s, 1, false)
	if got := stsPending(s, []*corev1.Pod{p0, p1}); got != "" {
		t.Errorf("pending: %q", got)
	}
	if got := stsPending(s, []*corev1.Pod{p0, p1, readyPod(s, 2, false)}); got != "pod ns/db-2 of statefulset db to go (scaled in)" {
		t.Errorf("pending: %q", got)
	}
}

func TestStatefulSetUpdatable(t *testing.T) {
	cur := testSet(3, appsv1.OrderedReadyPodManagement)
	want := cur.DeepCopy()
	*want.Spec.Replicas = 1
	want.Spec.Template.Labels["v"] = "2"
	if err := statefulSetUpdatable(cur, want); err != nil {
		t.Errorf("replicas and template: %v", err)
	}
	want.Spec.ServiceName = "other"
	if err := statefulSetUpdatable(cur, want); err == nil {
		t.Error("serviceName change allowed")
	}
}
