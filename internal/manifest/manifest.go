// Package manifest decodes, validates and defaults the Kubernetes objects users apply.
//
// `podnet apply -f` reads multi-document YAML or JSON (and `kind: List`) and turns it into
// typed objects: *corev1.Namespace, *corev1.Pod, *appsv1.Deployment, *appsv1.StatefulSet,
// *corev1.Service and
// *networkingv1.NetworkPolicy. Decoding is strict, as `kubectl apply --validate=strict`:
// unknown and duplicate fields are errors. Validate checks what kube-apiserver would
// check for the fields the lab uses, and Default fills in what kube-apiserver would.
//
// Every problem is reported as its own error naming the source, the document number,
// the line when known and the field path, e.g.
//
//	pods.yaml:14: document 2 (Pod "web"): unknown field "spec.containres"
//	pods.yaml:21: document 2 (Pod "web"): spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive
//
// Decoding a source is all-or-nothing: a source with any error yields no objects.
package manifest

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// kindInfo describes one supported kind.
type kindInfo struct {
	apiVersion string
	kind       string
	namespaced bool
	new        func() runtime.Object
}

var kinds = []kindInfo{
	{"v1", "Namespace", false, func() runtime.Object { return &corev1.Namespace{} }},
	{"v1", "Pod", true, func() runtime.Object { return &corev1.Pod{} }},
	{"apps/v1", "Deployment", true, func() runtime.Object { return &appsv1.Deployment{} }},
	{"apps/v1", "StatefulSet", true, func() runtime.Object { return &appsv1.StatefulSet{} }},
	{"v1", "Service", true, func() runtime.Object { return &corev1.Service{} }},
	{"networking.k8s.io/v1", "NetworkPolicy", true, func() runtime.Object { return &networkingv1.NetworkPolicy{} }},
}

func lookupKind(kind string) (kindInfo, bool) {
	for _, k := range kinds {
		if k.kind == kind {
			return k, true
		}
	}
	return kindInfo{}, false
}

// SupportedKinds lists the kinds Decode accepts as "Kind (apiVersion)", in a stable order.
// A `kind: List` (apiVersion v1) whose items are of these kinds is accepted too.
func SupportedKinds() []string {
	out := make([]string, len(kinds))
	for i, k := range kinds {
		out[i] = fmt.Sprintf("%s (%s)", k.kind, k.apiVersion)
	}
	return out
}

// IsNamespaced reports whether objects of kind live in a namespace. It is false for
// Namespace and for kinds this package does not know.
func IsNamespaced(kind string) bool {
	k, ok := lookupKind(kind)
	return ok && k.namespaced
}

// KindOf returns obj's kind: the Kind of its TypeMeta or, when that is empty, the kind
// its Go type stands for ("Pod" for *corev1.Pod, ...).
func KindOf(obj runtime.Object) string {
	if obj == nil {
		return ""
	}
	if k := obj.GetObjectKind().GroupVersionKind().Kind; k != "" {
		return k
	}
	switch obj.(type) {
	case *corev1.Namespace:
		return "Namespace"
	case *corev1.Pod:
		return "Pod"
	case *appsv1.Deployment:
		return "Deployment"
	case *appsv1.StatefulSet:
		return "StatefulSet"
	case *corev1.Service:
		return "Service"
	case *networkingv1.NetworkPolicy:
		return "NetworkPolicy"
	}
	t := reflect.TypeOf(obj)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t.Name()
}

// KeyOf returns obj's namespace and name ("" namespace for cluster-scoped objects).
func KeyOf(obj runtime.Object) (namespace, name string) {
	m, ok := obj.(metav1.Object)
	if !ok {
		return "", ""
	}
	return m.GetNamespace(), m.GetName()
}

// SetTypeMeta fills in obj's apiVersion and kind when they are empty, for objects built
// in Go rather than decoded.
func SetTypeMeta(obj runtime.Object) {
	gvk := obj.GetObjectKind().GroupVersionKind()
	if gvk.Kind != "" && gvk.Version != "" {
		return
	}
	k, ok := lookupKind(KindOf(obj))
	if !ok {
		return
	}
	gv, _ := schema.ParseGroupVersion(k.apiVersion)
	obj.GetObjectKind().SetGroupVersionKind(gv.WithKind(k.kind))
}

// describe names an object for messages: `Pod "web"`, or just `Pod` without a name.
func describe(kind, name string) string {
	switch {
	case kind == "" && name == "":
		return ""
	case name == "":
		return kind
	case kind == "":
		return strconv.Quote(name)
	}
	return kind + " " + strconv.Quote(name)
}

// Error is one problem in one document of a manifest source.
type Error struct {
	// Source is the file name, or "<stdin>".
	Source string
	// Document is the 1-based number of the document within Source (documents
	// holding nothing but blanks and comments are not counted); 0 when the
	// problem concerns the whole source.
	Document int
	// Item is the 1-based index within a List's items; 0 when not in a List.
	Item int
	// Line is the 1-based line in Source the problem is on; 0 when unknown.
	Line int
	// Object names the object, e.g. `Pod "web"`, when known.
	Object string
	// Err is the problem itself; for validation problems a *field.Error.
	Err error
}

// Error formats e as `source:line: document N, item M (Kind "name"): problem`.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Source)
	if e.Line > 0 {
		b.WriteString(":")
		b.WriteString(strconv.Itoa(e.Line))
	}
	if e.Document > 0 {
		fmt.Fprintf(&b, ": document %d", e.Document)
		if e.Item > 0 {
			fmt.Fprintf(&b, ", item %d", e.Item)
		}
		if e.Object != "" {
			fmt.Fprintf(&b, " (%s)", e.Object)
		}
	}
	b.WriteString(": ")
	b.WriteString(e.Err.Error())
	return b.String()
}

// Unwrap returns the underlying problem.
func (e *Error) Unwrap() error { return e.Err }
