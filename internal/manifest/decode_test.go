package manifest

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// ident is what a test expects of a decoded object.
type ident struct {
	apiVersion, kind, namespace, name string
}

func identOf(obj runtime.Object) ident {
	ns, name := KeyOf(obj)
	gvk := obj.GetObjectKind().GroupVersionKind()
	return ident{gvk.GroupVersion().String(), KindOf(obj), ns, name}
}

// errLines splits a joined error into its lines, one per problem.
func errLines(err error) []string {
	if err == nil {
		return nil
	}
	return strings.Split(err.Error(), "\n")
}

// checkErrors requires exactly len(want) problems, the i-th containing want[i].
func checkErrors(t *testing.T, err error, want []string) {
	t.Helper()
	got := errLines(err)
	if len(got) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
	for i := range want {
		if !strings.Contains(got[i], want[i]) {
			t.Errorf("problem %d = %q\nwant containing %q", i+1, got[i], want[i])
		}
	}
}

const podYAML = `apiVersion: v1
kind: Pod
metadata:
  name: web
spec:
  containers:
    - name: web
      ports:
        - containerPort: 8080
`

func TestDecode(t *testing.T) {
	web := ident{"v1", "Pod", "", "web"}
	tests := []struct {
		name    string
		source  string
		input   string
		want    []ident
		wantErr []string
	}{
		{
			name:  "single document",
			input: podYAML,
			want:  []ident{web},
		},
		{
			name:  "empty input",
			input: "",
		},
		{
			name:  "only comments and separators",
			input: "# nothing here\n---\n---\n   \n# still nothing\n",
		},
		{
			name: "multi-document with leading separator and empty documents",
			input: "---\n" + podYAML + "---\n---\n# comment only\n---\n" +
				"apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: shop\nspec:\n  ports: [{port: 80}]\n" +
				"--- # trailing comment on a separator\n" +
				"apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: web}]}\n" +
				"---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny}\nspec: {podSelector: {}}\n" +
				"---\napiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n" +
				"---\nnull\n---\n",
			want: []ident{web, {"v1", "Service", "shop", "web"}, {"apps/v1", "Deployment", "", "web"},
				{"networking.k8s.io/v1", "NetworkPolicy", "", "deny"}, {"v1", "Namespace", "", "shop"}},
		},
		{
			name:  "separator carrying the document",
			input: "--- {apiVersion: v1, kind: Namespace, metadata: {name: a}}\n--- {apiVersion: v1, kind: Namespace, metadata: {name: b}}\n",
			want:  []ident{{"v1", "Namespace", "", "a"}, {"v1", "Namespace", "", "b"}},
		},
		{
			name:  "CRLF line endings",
			input: strings.ReplaceAll("---\n"+podYAML+"---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n", "\n", "\r\n"),
			want:  []ident{web, {"v1", "Namespace", "", "shop"}},
		},
		{
			name:  "byte order mark",
			input: "\xef\xbb\xbf" + podYAML,
			want:  []ident{web},
		},
		{
			name:  "JSON object",
			input: `{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"}, "spec": {"containers": [{"name": "web"}]}}`,
			want:  []ident{web},
		},
		{
			name: "JSON stream",
			input: "{\"apiVersion\": \"v1\", \"kind\": \"Namespace\", \"metadata\": {\"name\": \"a\"}}\n" +
				"{\n\t\"apiVersion\": \"v1\",\n\t\"kind\": \"Namespace\",\n\t\"metadata\": {\"name\": \"b\"}\n}\n",
			want: []ident{{"v1", "Namespace", "", "a"}, {"v1", "Namespace", "", "b"}},
		},
		{
			name:  "JSON documents separated by YAML separators",
			input: "{\"apiVersion\": \"v1\", \"kind\": \"Namespace\", \"metadata\": {\"name\": \"a\"}}\n---\n{\"apiVersion\": \"v1\", \"kind\": \"Namespace\", \"metadata\": {\"name\": \"b\"}}\n",
			want:  []ident{{"v1", "Namespace", "", "a"}, {"v1", "Namespace", "", "b"}},
		},
		{
			name:  "YAML flow mapping first",
			input: "{apiVersion: v1, kind: Namespace, metadata: {name: a}}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: b}\n",
			want:  []ident{{"v1", "Namespace", "", "a"}, {"v1", "Namespace", "", "b"}},
		},
		{
			name: "YAML List",
			input: "apiVersion: v1\nkind: List\nmetadata: {}\nitems:\n" +
				"- apiVersion: v1\n  kind: Namespace\n  metadata: {name: shop}\n" +
				"- apiVersion: v1\n  kind: Pod\n  metadata: {name: web, namespace: shop}\n  spec: {containers: [{name: web}]}\n",
			want: []ident{{"v1", "Namespace", "", "shop"}, {"v1", "Pod", "shop", "web"}},
		},
		{
			name:  "JSON List",
			input: `{"apiVersion": "v1", "kind": "List", "items": [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}]}`,
			want:  []ident{{"v1", "Namespace", "", "shop"}},
		},
		{
			name:  "empty List",
			input: "apiVersion: v1\nkind: List\nitems: []\n",
		},
		{
			name:  "anchors and aliases",
			input: "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  labels: &l {app: web}\n  annotations: *l\nspec: {containers: [{name: web}]}\n",
			want:  []ident{web},
		},

		// Errors.
		{
			name:    "unknown field with its path and line",
			source:  "pods.yaml",
			input:   podYAML + "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containres: []\n",
			wantErr: []string{`pods.yaml:16: document 2 (Pod "web"): unknown field "spec.containres"`},
		},
		{
			name:   "several unknown fields, one error each",
			source: "p.yaml",
			input:  "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  nmae: x\nspec:\n  containers:\n    - name: a\n    - name: b\n      imagee: nginx\n      ports:\n        - containerport: 80\n",
			wantErr: []string{
				`p.yaml:5: document 1 (Pod "web"): unknown field "metadata.nmae"`,
				`p.yaml:10: document 1 (Pod "web"): unknown field "spec.containers[1].imagee"`,
				`p.yaml:12: document 1 (Pod "web"): unknown field "spec.containers[1].ports[0].containerport"`,
			},
		},
		{
			name:    "field names are case-sensitive",
			source:  "p.yaml",
			input:   "apiVersion: v1\nkind: Pod\nMetadata:\n  name: web\n",
			wantErr: []string{`p.yaml:3: document 1 (Pod): unknown field "Metadata"`},
		},
		{
			name:    "duplicate field",
			source:  "p.yaml",
			input:   "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  name: other\nspec: {containers: [{name: a}]}\n",
			wantErr: []string{`p.yaml:5: document 1 (Pod "web"): duplicate field "metadata.name" (first given on line 4)`},
		},
		{
			name:    "duplicate label key",
			source:  "p.yaml",
			input:   "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  labels:\n    app.kubernetes.io/name: a\n    app.kubernetes.io/name: b\n",
			wantErr: []string{`p.yaml:7: document 1 (Pod "web"): duplicate field "metadata.labels[app.kubernetes.io/name]"`},
		},
		{
			name:    "duplicate field in JSON",
			source:  "p.json",
			input:   "{\"apiVersion\": \"v1\", \"kind\": \"Namespace\",\n \"metadata\": {\"name\": \"a\"},\n \"kind\": \"Namespace\"}",
			wantErr: []string{`p.json:3: document 1 (Namespace "a"): duplicate field "kind" (first given on line 1)`},
		},
		{
			name:    "wrong type with indexed path",
			source:  "p.yaml",
			input:   "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  containers:\n  - name: a\n    ports: [{containerPort: 80}]\n  - name: b\n    ports:\n    - containerPort: 81\n    - containerPort: eighty\n",
			wantErr: []string{`p.yaml:11: document 1 (Pod "web"): spec.containers[1].ports[1].containerPort: invalid type: got string "eighty", want integer`},
		},
		{
			name:    "wrong type in a map",
			source:  "p.yaml",
			input:   "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  labels:\n    app: web\n    replicas: 3\n",
			wantErr: []string{`p.yaml:7: document 1 (Pod "web"): metadata.labels[replicas]: invalid type: got number "3", want string`},
		},
		{
			name:    "wrong type for int-or-string",
			source:  "s.yaml",
			input:   "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  ports:\n  - port: 80\n    targetPort: true\n",
			wantErr: []string{`s.yaml:7: document 1 (Service "web"): spec.ports[0].targetPort: invalid type: got bool "true", want integer or string`},
		},
		{
			name:    "object where a list belongs",
			source:  "p.yaml",
			input:   "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  containers:\n    name: web\n",
			wantErr: []string{`p.yaml:6: document 1 (Pod "web"): spec.containers: invalid type: got object, want array`},
		},
		{
			name:    "invalid quantity",
			source:  "p.yaml",
			input:   "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  containers:\n  - name: web\n    resources: {limits: {cpu: lots}}\n",
			wantErr: []string{`p.yaml:1: document 1 (Pod "web"): invalid value: quantities must match`},
		},
		{
			name:    "unknown kind lists supported kinds",
			source:  "x.yaml",
			input:   podYAML + "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg}\n",
			wantErr: []string{`x.yaml:12: document 2 (ConfigMap "cfg"): unsupported kind "ConfigMap" (apiVersion "v1"); supported kinds: Namespace (v1), Pod (v1), Deployment (apps/v1), StatefulSet (apps/v1), Service (v1), NetworkPolicy (networking.k8s.io/v1), and List (v1) of these`},
		},
		{
			name:    "known kind, wrong apiVersion",
			source:  "d.yaml",
			input:   "apiVersion: extensions/v1beta1\nkind: Deployment\nmetadata: {name: web}\n",
			wantErr: []string{`d.yaml:1: document 1 (Deployment "web"): Deployment is not served as apiVersion "extensions/v1beta1"; use apiVersion "apps/v1"`},
		},
		{
			name:    "missing kind",
			source:  "m.yaml",
			input:   "# a pod\napiVersion: v1\nmetadata: {name: web}\n",
			wantErr: []string{`m.yaml:2: document 1 ("web"): missing required field "kind"`},
		},
		{
			name:    "missing apiVersion",
			source:  "m.yaml",
			input:   "kind: Pod\nmetadata: {name: web}\n",
			wantErr: []string{`m.yaml:1: document 1 (Pod "web"): missing required field "apiVersion"`},
		},
		{
			name:    "kind not a string",
			source:  "m.yaml",
			input:   "apiVersion: v1\nkind: [Pod]\n",
			wantErr: []string{`m.yaml:2: document 1: field "kind" must be a non-empty string`},
		},
		{
			name:    "malformed YAML reports the line",
			source:  "bad.yaml",
			input:   podYAML + "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n   labels: x\n",
			wantErr: []string{`bad.yaml:15: document 2: malformed YAML: mapping values are not allowed in this context`},
		},
		{
			name:    "tab indentation",
			source:  "bad.yaml",
			input:   "apiVersion: v1\nkind: Pod\nmetadata:\n\tname: web\n",
			wantErr: []string{`bad.yaml:4: document 1: malformed YAML: found character that cannot start any token`},
		},
		{
			name:    "content after a document end marker is not dropped",
			source:  "e.yaml",
			input:   "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n...\napiVersion: v1\nkind: Namespace\nmetadata: {name: b}\n",
			wantErr: []string{`e.yaml:5: document 1: malformed YAML: unexpected content after the end of the document; separate documents with a "---" line`},
		},
		{
			name:    "two flow mappings in one document",
			source:  "e.yaml",
			input:   "{apiVersion: v1, kind: Namespace, metadata: {name: a}}\n{apiVersion: v1, kind: Namespace, metadata: {name: b}}\n",
			wantErr: []string{`e.yaml:2: document 1: malformed YAML: unexpected content after the end of the document; separate documents with a "---" line`},
		},
		{
			name:    "document that is not a mapping",
			source:  "l.yaml",
			input:   podYAML + "---\n- a\n- b\n",
			wantErr: []string{`l.yaml:11: document 2: a document must be an object (a mapping), not a list`},
		},
		{
			name:    "JSON stream with a syntax error in the second value",
			source:  "s.json",
			input:   "{\"apiVersion\": \"v1\", \"kind\": \"Namespace\", \"metadata\": {\"name\": \"a\"}}\n{\"apiVersion\": \"v1\",\n \"kind\": ,\n}\n",
			wantErr: []string{`s.json:3: document 2: malformed JSON: invalid character ','`},
		},
		{
			name:    "JSON value that is not an object",
			source:  "s.json",
			input:   "{\"apiVersion\": \"v1\", \"kind\": \"Namespace\", \"metadata\": {\"name\": \"a\"}}\n[1, 2]\n",
			wantErr: []string{`s.json:2: document 2: a document must be an object, not an array`},
		},
		{
			name:   "List item problems name the item",
			source: "list.yaml",
			input: "apiVersion: v1\nkind: List\nitems:\n" +
				"- apiVersion: v1\n  kind: Namespace\n  metadata: {name: ok}\n" +
				"- apiVersion: v1\n  kind: Pod\n  metadata: {name: web}\n  spec:\n    containers:\n    - name: web\n      imagee: x\n" +
				"- apiVersion: v1\n  kind: Secret\n  metadata: {name: s}\n" +
				"- 42\n",
			wantErr: []string{
				`list.yaml:13: document 1, item 2 (Pod "web"): unknown field "spec.containers[0].imagee"`,
				`list.yaml:15: document 1, item 3 (Secret "s"): unsupported kind "Secret"`,
				`list.yaml:17: document 1, item 4: a List item must be an object, not a number`,
			},
		},
		{
			name:    "unknown field in a List",
			source:  "list.yaml",
			input:   "apiVersion: v1\nkind: List\nitem: []\n",
			wantErr: []string{`list.yaml:3: document 1 (List): unknown field "item"`},
		},
		{
			name:    "List inside a List",
			source:  "list.yaml",
			input:   "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: List\n  items: []\n",
			wantErr: []string{`list.yaml:5: document 1, item 1 (List): a List inside a List is not supported`},
		},
		{
			name:   "all-or-nothing: one bad document, every problem reported",
			source: "mix.yaml",
			input: podYAML + "---\napiVersion: v1\nkind: Pod\nmetadata: {name: b}\nspec: {containers: [{name: b, imagee: x}]}\n" +
				"---\napiVersion: v1\nkind: Namespace\nmetadata: {name: ok}\n---\nkind: Gadget\napiVersion: v9\n",
			wantErr: []string{
				`mix.yaml:14: document 2 (Pod "b"): unknown field "spec.containers[0].imagee"`,
				`mix.yaml:20: document 4 (Gadget): unsupported kind "Gadget"`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			source := tt.source
			if source == "" {
				source = "test.yaml"
			}
			objs, err := Decode([]byte(tt.input), source)
			if tt.wantErr != nil {
				if objs != nil {
					t.Errorf("Decode returned %d objects along with an error", len(objs))
				}
				checkErrors(t, err, tt.wantErr)
				return
			}
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if len(objs) != len(tt.want) {
				t.Fatalf("Decode returned %d objects, want %d", len(objs), len(tt.want))
			}
			for i, obj := range objs {
				if got := identOf(obj); got != tt.want[i] {
					t.Errorf("object %d = %+v, want %+v", i, got, tt.want[i])
				}
			}
		})
	}
}

func TestDecodeErrorType(t *testing.T) {
	_, err := Decode([]byte(podYAML+"---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: x\nspec:\n  bogus: 1\n"), "p.yaml")
	var me *Error
	if !errors.As(err, &me) {
		t.Fatalf("error %v is not a *manifest.Error", err)
	}
	if me.Source != "p.yaml" || me.Document != 2 || me.Line != 16 || me.Object != `Pod "x"` || me.Item != 0 {
		t.Errorf("Error = %+v", *me)
	}
}

func TestDecodeTypes(t *testing.T) {
	objs, err := Decode([]byte(`
apiVersion: v1
kind: Namespace
metadata: {name: a}
---
apiVersion: v1
kind: Pod
metadata: {name: a}
spec: {containers: [{name: a}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: a}
---
apiVersion: v1
kind: Service
metadata: {name: a}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: a}
`), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := objs[0].(*corev1.Namespace); !ok {
		t.Errorf("0: %T", objs[0])
	}
	if p, ok := objs[1].(*corev1.Pod); !ok || p.Spec.Containers[0].Name != "a" || p.APIVersion != "v1" || p.Kind != "Pod" {
		t.Errorf("1: %T %+v", objs[1], objs[1])
	}
	if _, ok := objs[2].(*appsv1.Deployment); !ok {
		t.Errorf("2: %T", objs[2])
	}
	if _, ok := objs[3].(*corev1.Service); !ok {
		t.Errorf("3: %T", objs[3])
	}
	if np, ok := objs[4].(*networkingv1.NetworkPolicy); !ok || np.Kind != "NetworkPolicy" || np.APIVersion != "networking.k8s.io/v1" {
		t.Errorf("4: %T", objs[4])
	}
}

func TestDocumentsLocations(t *testing.T) {
	data, err := os.ReadFile("testdata/shop.yaml")
	if err != nil {
		t.Fatal(err)
	}
	docs, err := DecodeDocuments(data, "testdata/shop.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		kind  string
		index int
		line  int
	}{
		{"Namespace", 1, 4}, {"Deployment", 2, 11}, {"Service", 3, 41}, {"Pod", 4, 60},
		{"NetworkPolicy", 5, 73}, {"NetworkPolicy", 6, 81},
	}
	if len(docs) != len(want) {
		t.Fatalf("%d documents, want %d", len(docs), len(want))
	}
	for i, w := range want {
		d := docs[i]
		if KindOf(d.Object) != w.kind || d.Index != w.index || d.Line != w.line || d.Source != "testdata/shop.yaml" {
			t.Errorf("doc %d: %s index %d line %d, want %+v", i, KindOf(d.Object), d.Index, d.Line, w)
		}
	}
	// Field lines, present and absent.
	dep := docs[1]
	for path, line := range map[string]int{
		"spec.template.spec.containers[0].ports[1].containerPort": 36,
		"spec.template.spec.containers[0].ports[2]":               37,
		"metadata.labels[app.kubernetes.io/name]":                 17,
		"spec.template.spec.containers[0].ports[7]":               32, // no such port: the ports field
		"spec.strategy.type":                                      18, // absent: spec
		"":                                                        11,
	} {
		if got := dep.LineOf(path); got != line {
			t.Errorf("LineOf(%q) = %d, want %d", path, got, line)
		}
	}
}

func TestPrepareLocatesValidationErrors(t *testing.T) {
	input := podYAML + `---
apiVersion: v1
kind: Pod
metadata:
  name: web2
spec:
  containers:
    - name: web
      ports:
        - containerPort: 8080
        - containerPort: 70000
    - name: web
`
	docs, err := DecodeDocuments([]byte(input), "pods.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := docs[0].Prepare(); err != nil {
		t.Fatalf("valid pod: %v", err)
	}
	checkErrors(t, docs[1].Prepare(), []string{
		`pods.yaml:20: document 2 (Pod "web2"): spec.containers[0].ports[1].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive`,
		`pods.yaml:21: document 2 (Pod "web2"): spec.containers[1].name: Duplicate value: "web"`,
	})
	// Prepare defaulted the object.
	if ns, _ := KeyOf(docs[1].Object); ns != "default" {
		t.Errorf("namespace = %q after Prepare", ns)
	}
}

func TestReadFiles(t *testing.T) {
	objs, err := ReadFiles([]string{"testdata/app", "testdata/shop.yaml"})
	if err != nil {
		t.Fatal(err)
	}
	want := []ident{
		{"v1", "Namespace", "", "backend"},
		{"apps/v1", "Deployment", "backend", "api"},
		{"v1", "Service", "backend", "api"},
		{"networking.k8s.io/v1", "NetworkPolicy", "backend", "api-egress"},
		{"v1", "Namespace", "", "shop"},
		{"apps/v1", "Deployment", "shop", "web"},
		{"v1", "Service", "shop", "web"},
		{"v1", "Pod", "shop", "client"},
		{"networking.k8s.io/v1", "NetworkPolicy", "shop", "default-deny"},
		{"networking.k8s.io/v1", "NetworkPolicy", "shop", "web-from-client"},
	}
	if len(objs) != len(want) {
		t.Fatalf("%d objects, want %d", len(objs), len(want))
	}
	for i := range want {
		if got := identOf(objs[i]); got != want[i] {
			t.Errorf("object %d = %+v, want %+v", i, got, want[i])
		}
	}
}

func TestReadDocumentsStdinAndErrors(t *testing.T) {
	docs, err := ReadDocuments(strings.NewReader(podYAML), []string{"-"})
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) != 1 || docs[0].Source != StdinSource {
		t.Fatalf("docs = %+v", docs)
	}

	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(good, []byte(podYAML), 0o644)
	os.WriteFile(bad, []byte("apiVersion: v1\nkind: Pod\nmetadata: {name: b}\nspec: {containerz: []}\n"), 0o644)
	empty := t.TempDir()
	os.WriteFile(filepath.Join(empty, "README.md"), []byte("# hi"), 0o644)

	objs, err := ReadFiles([]string{good, bad, filepath.Join(dir, "missing.yaml"), empty})
	if objs != nil {
		t.Errorf("got %d objects despite errors", len(objs))
	}
	checkErrors(t, err, []string{
		bad + `:4: document 1 (Pod "b"): unknown field "spec.containerz"`,
		"missing.yaml: no such file or directory",
		empty + ": directory has no .yaml, .yml or .json files",
	})

	_, err = ReadDocuments(strings.NewReader(podYAML), []string{"-", "-"})
	checkErrors(t, err, []string{`"-" (standard input) given more than once`})
}

func TestLoad(t *testing.T) {
	objs, err := Load(nil, []string{"testdata/shop.yaml", "testdata/app"})
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 10 {
		t.Fatalf("%d objects", len(objs))
	}
	svc := objs[2].(*corev1.Service)
	if svc.Spec.Ports[1].TargetPort.IntVal != 9090 || svc.Spec.Ports[1].Protocol != corev1.ProtocolUDP ||
		svc.Spec.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyCluster {
		t.Errorf("service not defaulted: %+v", svc.Spec)
	}
	if ns := objs[0].(*corev1.Namespace); ns.Labels[NamespaceNameLabel] != "shop" || ns.Labels["team"] != "storefront" {
		t.Errorf("namespace labels = %v", ns.Labels)
	}

	// The same object twice, and a validation problem: both reported, nothing returned.
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.yaml"), []byte(podYAML), 0o644)
	os.WriteFile(filepath.Join(dir, "b.yaml"), []byte(podYAML+"---\napiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  ports:\n  - port: 0\n"), 0o644)
	objs, err = Load(nil, []string{dir})
	if objs != nil {
		t.Errorf("got objects despite errors")
	}
	checkErrors(t, err, []string{
		filepath.Join(dir, "b.yaml") + `:4: document 1 (Pod "web"): Pod "web" in namespace "default" is already defined by ` + filepath.Join(dir, "a.yaml") + " document 1 (line 1)",
		filepath.Join(dir, "b.yaml") + `:16: document 2 (Service "web"): spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive`,
	})
}

func TestKindOfKeyOf(t *testing.T) {
	tests := []struct {
		obj        runtime.Object
		kind, ns   string
		name       string
		namespaced bool
	}{
		{&corev1.Namespace{}, "Namespace", "", "", false},
		{&corev1.Pod{}, "Pod", "", "", true},
		{&appsv1.Deployment{}, "Deployment", "", "", true},
		{&corev1.Service{}, "Service", "", "", true},
		{&networkingv1.NetworkPolicy{}, "NetworkPolicy", "", "", true},
		{&corev1.ConfigMap{}, "ConfigMap", "", "", false},
	}
	for _, tt := range tests {
		if got := KindOf(tt.obj); got != tt.kind {
			t.Errorf("KindOf(%T) = %q", tt.obj, got)
		}
		if IsNamespaced(tt.kind) != tt.namespaced {
			t.Errorf("IsNamespaced(%q) = %v", tt.kind, !tt.namespaced)
		}
	}
	p := &corev1.Pod{}
	p.Name, p.Namespace = "web", "shop"
	if ns, name := KeyOf(p); ns != "shop" || name != "web" {
		t.Errorf("KeyOf = %q, %q", ns, name)
	}
	SetTypeMeta(p)
	if p.APIVersion != "v1" || p.Kind != "Pod" {
		t.Errorf("SetTypeMeta: %q %q", p.APIVersion, p.Kind)
	}
	d := &appsv1.Deployment{}
	SetTypeMeta(d)
	if d.APIVersion != "apps/v1" {
		t.Errorf("SetTypeMeta: %q", d.APIVersion)
	}
}
