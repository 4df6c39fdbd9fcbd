package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/util/retry"
)

// LabelRequest is `podnet label`: labels to set and keys to remove, as kubectl label takes them.
type LabelRequest struct {
	Kind      string            `json:"kind"` // Pod or Namespace
	Namespace string            `json:"namespace,omitempty"`
	Name      string            `json:"name"`
	Set       map[string]string `json:"set,omitempty"`
	Remove    []string          `json:"remove,omitempty"`
	Overwrite bool              `json:"overwrite,omitempty"`
}

// ParseLabelArgs reads kubectl-style label arguments: key=value sets, key- removes.
func ParseLabelArgs(args []string) (map[string]string, []string, error) {
	set := map[string]string{}
	var remove []string
	for _, a := range args {
		if strings.HasSuffix(a, "-") && !strings.Contains(a, "=") {
			k := strings.TrimSuffix(a, "-")
			if errs := validation.IsQualifiedName(k); len(errs) > 0 {
				return nil, nil, fmt.Errorf("label key %q: %s", k, strings.Join(errs, "; "))
			}
			remove = append(remove, k)
			continue
		}
		k, v, ok := strings.Cut(a, "=")
		if !ok {
			return nil, nil, fmt.Errorf("%q: want key=value to set a label or key- to remove one", a)
		}
		if errs := validation.IsQualifiedName(k); len(errs) > 0 {
			return nil, nil, fmt.Errorf("label key %q: %s", k, strings.Join(errs, "; "))
		}
		if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
			return nil, nil, fmt.Errorf("label %s value %q: %s", k, v, strings.Join(errs, "; "))
		}
		set[k] = v
	}
	if len(set)+len(remove) == 0 {
		return nil, nil, fmt.Errorf("no labels given: want key=value or key-")
	}
	return set, remove, nil
}

// relabel applies a label change to one object, as kubectl label does: an existing key with a
// different value is refused unless Overwrite. It returns kubectl's message.
func relabel(labels map[string]string, req LabelRequest) (map[string]string, bool, error) {
	out := map[string]string{}
	for k, v := range labels {
		out[k] = v
	}
	keys := make([]string, 0, len(req.Set))
	for k := range req.Set {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if cur, ok := out[k]; ok && cur != req.Set[k] && !req.Overwrite {
			return nil, false, fmt.Errorf("'%s' already has a value (%s), and --overwrite is false", k, cur)
		}
		out[k] = req.Set[k]
	}
	for _, k := range req.Remove {
		delete(out, k)
	}
	changed := len(out) != len(labels)
	for k, v := range out {
		if labels[k] != v {
			changed = true
		}
	}
	return out, changed, nil
}

func (d *Daemon) label(ctx context.Context, req LabelRequest) (string, error) {
	kind, err := ResolveKind(req.Kind)
	if err != nil {
		return "", err
	}
	c := d.client
	changed := false
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		switch kind {
		case "Pod":
			p, err := c.CoreV1().Pods(req.Namespace).Get(ctx, req.Name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			var l map[string]string
			if l, changed, err = relabel(p.Labels, req); err != nil || !changed {
				return err
			}
			p.Labels = l
			_, err = c.CoreV1().Pods(req.Namespace).Update(ctx, p, metav1.UpdateOptions{})
			return err
		case "Namespace":
			n, err := c.CoreV1().Namespaces().Get(ctx, req.Name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if _, ok := req.Set["kubernetes.io/metadata.name"]; ok && req.Set["kubernetes.io/metadata.name"] != req.Name {
				return fmt.Errorf("label kubernetes.io/metadata.name is set by the API server to the namespace's name")
			}
			var l map[string]string
			if l, changed, err = relabel(n.Labels, req); err != nil || !changed {
				return err
			}
			l["kubernetes.io/metadata.name"] = req.Name
			n.Labels = l
			_, err = c.CoreV1().Namespaces().Update(ctx, n, metav1.UpdateOptions{})
			return err
		}
		return fmt.Errorf("podnet label works on pods and namespaces, not %s", kind)
	})
	if apierrors.IsNotFound(err) {
		return "", fmt.Errorf("%s %q not found", strings.ToLower(kind), req.Name)
	}
	if err != nil {
		return "", err
	}
	if !changed {
		return fmt.Sprintf("%s/%s not labeled", strings.ToLower(kind), req.Name), nil
	}
	return fmt.Sprintf("%s/%s labeled", strings.ToLower(kind), req.Name), nil
}

func (d *Daemon) handleLabel(w http.ResponseWriter, r *http.Request) {
	var req LabelRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return
	}
	msg, err := d.label(r.Context(), req)
	if err != nil {
		writeErr(w, http.StatusBadRequest, err)
		return
	}
	if r.URL.Query().Get("wait") != "" {
		// Wait as apply does for Services: their slices follow the new labels, and every node
		// has programmed that.
		wctx, cancel := context.WithTimeout(r.Context(), 2*time.Minute)
		defer cancel()
		res := &Result{}
		svcs, err := d.client.CoreV1().Services(req.Namespace).List(wctx, metav1.ListOptions{})
		if err == nil {
			for _, s := range svcs.Items {
				res.Svcs = append(res.Svcs, Key{Namespace: s.Namespace, Name: s.Name})
			}
			err = d.waitApplied(wctx, res)
		}
		if err != nil {
			writeErr(w, http.StatusGatewayTimeout, err)
			return
		}
	}
	writeJSON(w, map[string]string{"message": msg})
}
