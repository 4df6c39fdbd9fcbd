package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	yaml "go.yaml.in/yaml/v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	sjson "sigs.k8s.io/json"
	sigsyaml "sigs.k8s.io/yaml"
)

// StdinSource is the Source of objects read from standard input ("-").
const StdinSource = "<stdin>"

// Document is one object decoded from a manifest, with where it came from.
type Document struct {
	// Object is a *corev1.Namespace, *corev1.Pod, *appsv1.Deployment, *appsv1.StatefulSet, *corev1.Service
	// or *networkingv1.NetworkPolicy with apiVersion and kind set.
	Object runtime.Object
	// Source is the file the object came from, or "<stdin>".
	Source string
	// Index is the 1-based number of the document within Source.
	Index int
	// Item is the 1-based index within a List's items; 0 when not in a List.
	Item int
	// Line is the line in Source where the object starts.
	Line int

	node *yaml.Node // the object's mapping node, lines relative to Source; nil when unknown
}

// LineOf returns the line in Source of the field at path (a field path such as
// "spec.containers[0].ports[1].containerPort" or "metadata.labels[app]"). When the field
// is absent it returns the line of its closest enclosing field, and the object's first
// line when nothing of the path is present.
func (d *Document) LineOf(path string) int {
	if l := lineOf(d.node, path); l > 0 {
		return l
	}
	return d.Line
}

// errAt wraps err as an *Error located at path within d.
func (d *Document) errAt(path string, err error) *Error {
	kind := KindOf(d.Object)
	_, name := KeyOf(d.Object)
	return &Error{Source: d.Source, Document: d.Index, Item: d.Item, Line: d.LineOf(path),
		Object: describe(kind, name), Err: err}
}

// Prepare defaults d.Object (see Default) and validates it (see Validate). Each
// validation problem becomes its own *Error, located at the line of the offending field.
func (d *Document) Prepare() error {
	Default(d.Object)
	err := Validate(d.Object)
	if err == nil {
		return nil
	}
	var inv *InvalidError
	if !errors.As(err, &inv) {
		return d.errAt("", err)
	}
	errs := make([]error, len(inv.Errors))
	for i, fe := range inv.Errors {
		errs[i] = d.errAt(fe.Field, fe)
	}
	return errors.Join(errs...)
}

// Decode decodes every object in data, which holds YAML documents separated by "---"
// lines or a stream of JSON objects; a `kind: List` contributes its items. source names
// data in errors. Decoding is strict and all-or-nothing: any problem (malformed YAML,
// unknown or duplicate field, wrong type, missing or unsupported apiVersion/kind) makes
// Decode return no objects and an error joining one *Error per problem. Empty documents
// are skipped. Objects are neither defaulted nor validated.
func Decode(data []byte, source string) ([]runtime.Object, error) {
	docs, err := DecodeDocuments(data, source)
	if err != nil {
		return nil, err
	}
	return objects(docs), nil
}

// DecodeDocuments is Decode returning each object with its location.
func DecodeDocuments(data []byte, source string) ([]Document, error) {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	chunks, splitErr := split(data)
	if splitErr != nil {
		// JSON documents may also be separated by YAML "---" lines; if the
		// data reads as YAML without a problem, that is what it is.
		if docs, errs := decodeChunks(splitYAML(data), source); len(errs) == 0 {
			return docs, nil
		}
	}
	docs, errs := decodeChunks(chunks, source)
	if splitErr != nil {
		splitErr.Source = source
		errs = append(errs, splitErr)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return docs, nil
}

func decodeChunks(chunks []chunk, source string) (docs []Document, errs []error) {
	for i, c := range chunks {
		d, e := decodeChunk(c, source, i+1)
		docs = append(docs, d...)
		errs = append(errs, e...)
	}
	return docs, errs
}

// ReadFiles decodes the objects in paths: files, directories (their *.yaml, *.yml and
// *.json files, in name order, not recursing) and "-" for standard input. Like Decode
// it is all-or-nothing: any error anywhere yields no objects.
func ReadFiles(paths []string) ([]runtime.Object, error) {
	docs, err := ReadDocuments(os.Stdin, paths)
	if err != nil {
		return nil, err
	}
	return objects(docs), nil
}

// ReadDocuments is ReadFiles returning each object with its location, reading "-" from
// stdin.
func ReadDocuments(stdin io.Reader, paths []string) ([]Document, error) {
	var (
		docs      []Document
		errs      []error
		stdinRead bool
	)
	add := func(data []byte, source string) {
		d, err := DecodeDocuments(data, source)
		if err != nil {
			errs = append(errs, err)
			return
		}
		docs = append(docs, d...)
	}
	readFile := func(path string) {
		data, err := os.ReadFile(path)
		if err != nil {
			errs = append(errs, err)
			return
		}
		add(data, path)
	}
	for _, p := range paths {
		if p == "-" {
			if stdinRead {
				errs = append(errs, errors.New(`"-" (standard input) given more than once`))
				continue
			}
			stdinRead = true
			if stdin == nil {
				stdin = os.Stdin
			}
			data, err := io.ReadAll(stdin)
			if err != nil {
				errs = append(errs, fmt.Errorf("reading standard input: %w", err))
				continue
			}
			add(data, StdinSource)
			continue
		}
		fi, err := os.Stat(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !fi.IsDir() {
			readFile(p)
			continue
		}
		entries, err := os.ReadDir(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		n := 0
		for _, e := range entries { // os.ReadDir sorts by name
			switch strings.ToLower(filepath.Ext(e.Name())) {
			case ".yaml", ".yml", ".json":
			default:
				continue
			}
			full := filepath.Join(p, e.Name())
			if st, err := os.Stat(full); err == nil && st.IsDir() {
				continue
			}
			n++
			readFile(full)
		}
		if n == 0 {
			errs = append(errs, fmt.Errorf("%s: directory has no .yaml, .yml or .json files", p))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return docs, nil
}

// Load reads paths like ReadDocuments, then defaults and validates every object (see
// Document.Prepare) and rejects the same object defined twice. It is all-or-nothing:
// on any problem it returns no objects and an error joining one *Error per problem.
func Load(stdin io.Reader, paths []string) ([]runtime.Object, error) {
	docs, err := ReadDocuments(stdin, paths)
	if err != nil {
		return nil, err
	}
	return prepareAll(docs)
}

func prepareAll(docs []Document) ([]runtime.Object, error) {
	var errs []error
	seen := map[string]*Document{}
	for i := range docs {
		d := &docs[i]
		if err := d.Prepare(); err != nil {
			errs = append(errs, err)
			continue
		}
		ns, name := KeyOf(d.Object)
		key := KindOf(d.Object) + "/" + ns + "/" + name
		if prev, ok := seen[key]; ok {
			where := fmt.Sprintf("%s document %d", prev.Source, prev.Index)
			if prev.Item > 0 {
				where += fmt.Sprintf(" item %d", prev.Item)
			}
			errs = append(errs, d.errAt("metadata.name", fmt.Errorf("%s %q in namespace %q is already defined by %s (line %d)",
				KindOf(d.Object), name, ns, where, prev.Line)))
			continue
		}
		seen[key] = d
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return objects(docs), nil
}

func objects(docs []Document) []runtime.Object {
	out := make([]runtime.Object, len(docs))
	for i := range docs {
		out[i] = docs[i].Object
	}
	return out
}

// chunk is the text of one document.
type chunk struct {
	data []byte
	line int  // line in the source of data's first byte
	json bool // data is one JSON value from a JSON stream
}

// split cuts data into non-blank documents: a stream of JSON values when data starts
// with '{', YAML documents separated by "---" lines otherwise.
func split(data []byte) ([]chunk, *Error) {
	if t := bytes.TrimLeft(data, " \t\r\n"); len(t) > 0 && t[0] == '{' {
		chunks, err := splitJSON(data)
		if err == nil || len(chunks) > 0 {
			return chunks, err
		}
		// Not even the first value is JSON: read it as YAML (flow style starts with
		// '{' too), which also gives the better message if it is neither.
	}
	return splitYAML(data), nil
}

func splitJSON(data []byte) ([]chunk, *Error) {
	var chunks []chunk
	dec := json.NewDecoder(bytes.NewReader(data))
	for {
		start := int(dec.InputOffset())
		var raw json.RawMessage
		err := dec.Decode(&raw)
		if err == io.EOF {
			return chunks, nil
		}
		for start < len(data) && isSpace(data[start]) {
			start++
		}
		if err != nil {
			line := lineAt(data, len(data))
			var se *json.SyntaxError
			if errors.As(err, &se) {
				line = lineAt(data, int(se.Offset)-1)
			}
			return chunks, &Error{Document: len(chunks) + 1, Line: line, Err: fmt.Errorf("malformed JSON: %v", err)}
		}
		chunks = append(chunks, chunk{data: raw, line: lineAt(data, start), json: true})
	}
}

func isSpace(b byte) bool { return b == ' ' || b == '\t' || b == '\r' || b == '\n' }

// lineAt returns the 1-based line of byte offset off in data.
func lineAt(data []byte, off int) int {
	off = max(0, min(off, len(data)))
	return 1 + bytes.Count(data[:off], []byte("\n"))
}

func splitYAML(data []byte) []chunk {
	var chunks []chunk
	start, startLine := 0, 1
	flush := func(end int) {
		if c := data[start:end]; !blank(c) {
			chunks = append(chunks, chunk{data: c, line: startLine})
		}
	}
	lineNo := 0
	for off := 0; off < len(data); {
		lineNo++
		next := len(data)
		if i := bytes.IndexByte(data[off:], '\n'); i >= 0 {
			next = off + i + 1
		}
		if sep, keep := separator(bytes.TrimRight(data[off:next], "\r\n")); sep {
			flush(off)
			if keep {
				start, startLine = off, lineNo
			} else {
				start, startLine = next, lineNo+1
			}
		}
		off = next
	}
	flush(len(data))
	return chunks
}

// separator reports whether line is a YAML document separator ("---", optionally
// followed by a comment) and whether it carries content of the next document
// ("--- {a: 1}"), in which case the line belongs to that document.
func separator(line []byte) (sep, keep bool) {
	rest, ok := bytes.CutPrefix(line, []byte("---"))
	if !ok {
		return false, false
	}
	if len(rest) == 0 {
		return true, false
	}
	if rest[0] != ' ' && rest[0] != '\t' {
		return false, false
	}
	t := bytes.TrimSpace(rest)
	return true, len(t) > 0 && t[0] != '#'
}

// blank reports whether a document holds nothing but whitespace and comments.
func blank(data []byte) bool {
	for line := range bytes.SplitSeq(data, []byte("\n")) {
		t := bytes.TrimSpace(line)
		if len(t) > 0 && t[0] != '#' {
			return false
		}
	}
	return true
}

var yamlLineRE = regexp.MustCompile(`^(?:yaml: )?line (\d+): `)

// yamlError turns a YAML parser error into a message and an absolute line.
func yamlError(err error, firstLine int) (int, string) {
	msg := err.Error()
	if m := yamlLineRE.FindStringSubmatchIndex(msg); m != nil {
		n, _ := strconv.Atoi(msg[m[2]:m[3]])
		return firstLine + n - 1, msg[m[1]:]
	}
	return firstLine, strings.TrimPrefix(msg, "yaml: ")
}

// parseYAML parses data as exactly one YAML document (an empty one when data holds
// none). YAML parsers stop after the first document without complaint; here more
// content, such as a second document after a "..." line, is an error rather than
// silently dropped.
func parseYAML(data []byte) (yaml.Node, error) {
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil {
		if err == io.EOF {
			return yaml.Node{}, nil
		}
		return yaml.Node{}, err
	}
	var extra yaml.Node
	err := dec.Decode(&extra)
	if err == io.EOF {
		return root, nil
	}
	line := extra.Line
	if len(extra.Content) > 0 {
		line = extra.Content[0].Line
	}
	if err != nil {
		if !strings.Contains(err.Error(), "did not find expected <document start>") {
			return yaml.Node{}, err
		}
		// The parser reports the line where the first document ended; point at
		// the content that follows it instead.
		line, _ = yamlError(err, 1)
		line = nextContentLine(data, line)
	}
	return yaml.Node{}, fmt.Errorf(`yaml: line %d: unexpected content after the end of the document; separate documents with a "---" line`, line)
}

// nextContentLine returns the first line after line that is not blank or a comment,
// or line itself if there is none.
func nextContentLine(data []byte, line int) int {
	n := 0
	for l := range bytes.SplitSeq(data, []byte("\n")) {
		n++
		if n <= line {
			continue
		}
		if t := bytes.TrimSpace(l); len(t) > 0 && t[0] != '#' {
			return n
		}
	}
	return line
}

func decodeChunk(c chunk, source string, index int) ([]Document, []error) {
	base := Document{Source: source, Index: index, Line: c.line}
	fail := func(line int, object string, err error) ([]Document, []error) {
		return nil, []error{&Error{Source: source, Document: index, Line: line, Object: object, Err: err}}
	}
	root, err := parseYAML(c.data)
	if err != nil {
		if !c.json {
			line, msg := yamlError(err, c.line)
			return fail(line, "", fmt.Errorf("malformed YAML: %s", msg))
		}
		// Valid JSON the YAML parser cannot read: go on without line numbers.
		root = yaml.Node{}
	} else {
		shiftLines(&root, c.line-1)
	}
	var top *yaml.Node
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		top = resolve(root.Content[0])
	}

	var js []byte
	if c.json {
		if c.data[0] != '{' {
			return fail(c.line, "", fmt.Errorf("a document must be an object, not %s", jsonValueKind(c.data)))
		}
		js = c.data
	} else {
		if top == nil || (top.Kind == yaml.ScalarNode && top.Tag == "!!null") {
			return nil, nil // an empty document
		}
		if top.Kind != yaml.MappingNode {
			return fail(top.Line, "", fmt.Errorf("a document must be an object (a mapping), not %s", nodeKind(top)))
		}
	}
	if top != nil && top.Kind == yaml.MappingNode {
		kind, name := nodeIdent(top)
		if dups := duplicates(top, ""); len(dups) > 0 {
			errs := make([]error, len(dups))
			for i, d := range dups {
				errs[i] = &Error{Source: source, Document: index, Line: d.line, Object: describe(kind, name),
					Err: fmt.Errorf("duplicate field %q (first given on line %d)", d.path, d.first)}
			}
			return nil, errs
		}
		base.node = top
		base.Line = top.Line
	}
	if !c.json {
		js, err = sigsyaml.YAMLToJSON(c.data)
		if err != nil {
			line, msg := yamlError(err, c.line)
			return fail(line, "", fmt.Errorf("malformed YAML: %s", strings.TrimPrefix(msg, "error converting YAML to JSON: yaml: ")))
		}
	}
	return decodeObject(js, base)
}

// decodeObject decodes the JSON object js (a whole document or a List item) located by d.
func decodeObject(js []byte, d Document) ([]Document, []error) {
	var peek struct {
		APIVersion any `json:"apiVersion"`
		Kind       any `json:"kind"`
		Metadata   any `json:"metadata"`
	}
	_ = sjson.UnmarshalCaseSensitivePreserveInts(js, &peek)
	apiVersion, _ := peek.APIVersion.(string)
	kind, _ := peek.Kind.(string)
	var name string
	if m, ok := peek.Metadata.(map[string]any); ok {
		name, _ = m["name"].(string)
	}
	errAt := func(path string, err error) []error {
		line := lineOf(d.node, path)
		if line == 0 {
			line = d.Line
		}
		return []error{&Error{Source: d.Source, Document: d.Index, Item: d.Item, Line: line,
			Object: describe(kind, name), Err: err}}
	}
	switch {
	case peek.Kind == nil:
		return nil, errAt("", errors.New(`missing required field "kind"`))
	case kind == "":
		return nil, errAt("kind", errors.New(`field "kind" must be a non-empty string`))
	case peek.APIVersion == nil:
		return nil, errAt("", errors.New(`missing required field "apiVersion"`))
	case apiVersion == "":
		return nil, errAt("apiVersion", errors.New(`field "apiVersion" must be a non-empty string`))
	}

	if kind == "List" {
		if d.Item > 0 {
			return nil, errAt("kind", errors.New("a List inside a List is not supported"))
		}
		if apiVersion != "v1" {
			return nil, errAt("apiVersion", fmt.Errorf(`List is served as apiVersion "v1", not %q`, apiVersion))
		}
		return decodeList(js, d)
	}
	info, ok := lookupKind(kind)
	if !ok {
		return nil, errAt("kind", fmt.Errorf("unsupported kind %q (apiVersion %q); supported kinds: %s, and List (v1) of these",
			kind, apiVersion, strings.Join(SupportedKinds(), ", ")))
	}
	if info.apiVersion != apiVersion {
		return nil, errAt("apiVersion", fmt.Errorf("%s is not served as apiVersion %q; use apiVersion %q", kind, apiVersion, info.apiVersion))
	}
	obj := info.new()
	strictErrs, err := sjson.UnmarshalStrict(js, obj)
	if err != nil {
		path, line, msg := typeError(err, d.node, obj)
		if line == 0 {
			line = lineOf(d.node, path)
		}
		if line == 0 {
			line = d.Line
		}
		return nil, []error{&Error{Source: d.Source, Document: d.Index, Item: d.Item, Line: line,
			Object: describe(kind, name), Err: errors.New(msg)}}
	}
	if len(strictErrs) > 0 {
		var errs []error
		for _, se := range strictErrs {
			path := ""
			var fe sjson.FieldError
			if errors.As(se, &fe) {
				path = fe.FieldPath()
			}
			errs = append(errs, errAt(path, se)...)
		}
		return nil, errs
	}
	d.Object = obj
	return []Document{d}, nil
}

func decodeList(js []byte, d Document) ([]Document, []error) {
	var list struct {
		APIVersion string            `json:"apiVersion"`
		Kind       string            `json:"kind"`
		Metadata   metav1.ListMeta   `json:"metadata"`
		Items      []json.RawMessage `json:"items"`
	}
	fail := func(path string, err error) []error {
		line := lineOf(d.node, path)
		if line == 0 {
			line = d.Line
		}
		return []error{&Error{Source: d.Source, Document: d.Index, Line: line, Object: "List", Err: err}}
	}
	strictErrs, err := sjson.UnmarshalStrict(js, &list)
	if err != nil {
		path, _, msg := typeError(err, d.node, &list)
		return nil, fail(path, errors.New(msg))
	}
	if len(strictErrs) > 0 {
		var errs []error
		for _, se := range strictErrs {
			var fe sjson.FieldError
			path := ""
			if errors.As(se, &fe) {
				path = fe.FieldPath()
			}
			errs = append(errs, fail(path, se)...)
		}
		return nil, errs
	}
	var itemNodes []*yaml.Node
	if d.node != nil {
		if n := mapValue(d.node, "items"); n != nil && n.Kind == yaml.SequenceNode {
			itemNodes = n.Content
		}
	}
	var (
		docs []Document
		errs []error
	)
	for i, raw := range list.Items {
		item := Document{Source: d.Source, Index: d.Index, Item: i + 1, Line: d.Line}
		if i < len(itemNodes) {
			item.node = resolve(itemNodes[i])
			item.Line = item.node.Line
		}
		if t := bytes.TrimSpace(raw); len(t) == 0 || t[0] != '{' {
			errs = append(errs, &Error{Source: d.Source, Document: d.Index, Item: i + 1, Line: item.Line,
				Err: fmt.Errorf("a List item must be an object, not %s", jsonValueKind(t))})
			continue
		}
		if item.node != nil && item.node.Kind != yaml.MappingNode {
			item.node = nil
		}
		ds, es := decodeObject(raw, item)
		docs = append(docs, ds...)
		errs = append(errs, es...)
	}
	return docs, errs
}

// typeError describes a JSON decoding error, best of all a type mismatch, which it
// locates in node: the field path with list indices, the line, and the message.
func typeError(err error, node *yaml.Node, obj any) (path string, line int, msg string) {
	value, field, typ, ok := unmarshalTypeError(err)
	if !ok || field == "" {
		return "", 0, "invalid value: " + strings.TrimPrefix(err.Error(), "json: ")
	}
	names := strings.Split(field, ".")
	want := describeType(typ)
	if ft := fieldType(reflect.TypeOf(obj), names); ft == reflect.TypeFor[intstr.IntOrString]() {
		want = "integer or string"
	}
	gotKind, _, _ := strings.Cut(value, " ")
	got := value
	n, p := findTyped(node, names, gotKind)
	if p == "" {
		p = field
	}
	if n != nil {
		line = n.Line
		if n.Kind == yaml.ScalarNode {
			got = gotKind + " " + strconv.Quote(n.Value)
		}
	}
	return p, line, fmt.Sprintf("%s: invalid type: got %s, want %s", p, got, want)
}

// unmarshalTypeError extracts the fields of an encoding/json UnmarshalTypeError (or of
// the identical type of sigs.k8s.io/json's internal fork) from err.
func unmarshalTypeError(err error) (value, field string, typ reflect.Type, ok bool) {
	for e := err; e != nil; e = errors.Unwrap(e) {
		v := reflect.ValueOf(e)
		if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct || v.Elem().Type().Name() != "UnmarshalTypeError" {
			continue
		}
		s := v.Elem()
		fv, ff, ft := s.FieldByName("Value"), s.FieldByName("Field"), s.FieldByName("Type")
		if fv.Kind() != reflect.String || ff.Kind() != reflect.String {
			continue
		}
		if ft.IsValid() && ft.Kind() == reflect.Interface && !ft.IsNil() {
			typ, _ = ft.Interface().(reflect.Type)
		}
		return fv.String(), ff.String(), typ, true
	}
	return "", "", nil, false
}

// fieldType follows JSON field names through Go struct types.
func fieldType(t reflect.Type, names []string) reflect.Type {
	for _, name := range names {
		for t != nil && (t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
			t = t.Elem()
		}
		if t == nil || t.Kind() != reflect.Struct {
			return nil
		}
		f, ok := jsonField(t, name)
		if !ok {
			return nil
		}
		t = f.Type
	}
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

func jsonField(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if tag == "-" {
			continue
		}
		if f.Anonymous && tag == "" {
			et := f.Type
			if et.Kind() == reflect.Pointer {
				et = et.Elem()
			}
			if et.Kind() == reflect.Struct {
				if sf, ok := jsonField(et, name); ok {
					return sf, true
				}
			}
			continue
		}
		if tag == name || (tag == "" && f.Name == name) {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

func describeType(t reflect.Type) string {
	if t == nil {
		return "another type"
	}
	switch t.Kind() {
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "integer"
	case reflect.Float32, reflect.Float64:
		return "number"
	case reflect.String:
		return "string"
	case reflect.Struct, reflect.Map:
		return "object"
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return "base64 string"
		}
		return "array"
	}
	return t.String()
}

func jsonValueKind(v []byte) string {
	v = bytes.TrimSpace(v)
	if len(v) == 0 {
		return "nothing"
	}
	switch v[0] {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

// nodeIdent returns the kind and metadata.name a mapping node declares, if any.
func nodeIdent(n *yaml.Node) (kind, name string) {
	if k := mapValue(n, "kind"); k != nil && k.Kind == yaml.ScalarNode {
		kind = k.Value
	}
	if m := mapValue(n, "metadata"); m != nil {
		if v := mapValue(m, "name"); v != nil && v.Kind == yaml.ScalarNode {
			name = v.Value
		}
	}
	return kind, name
}
