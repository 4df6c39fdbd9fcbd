package lab

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseLabelArgs(t *testing.T) {
	set, rm, err := ParseLabelArgs([]string{"app=web", "tier-", "example.com/team=blue", "empty="})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(set, map[string]string{"app": "web", "example.com/team": "blue", "empty": ""}) || !reflect.DeepEqual(rm, []string{"tier"}) {
		t.Fatalf("set %v remove %v", set, rm)
	}
	for _, bad := range [][]string{{}, {"app"}, {"-x=1"}, {"a=b c"}, {"bad key=1"}, {"k=" + strings.Repeat("v", 64)}} {
		if _, _, err := ParseLabelArgs(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestRelabel(t *testing.T) {
	cur := map[string]string{"app": "web", "tier": "front"}
	for _, tc := range []struct {
		name    string
		req     LabelRequest
		want    map[string]string
		changed bool
		err     string
	}{
		{"add", LabelRequest{Set: map[string]string{"x": "1"}}, map[string]string{"app": "web", "tier": "front", "x": "1"}, true, ""},
		{"same value", LabelRequest{Set: map[string]string{"app": "web"}}, cur, false, ""},
		{"conflict", LabelRequest{Set: map[string]string{"app": "db"}}, nil, false, "--overwrite is false"},
		{"overwrite", LabelRequest{Set: map[string]string{"app": "db"}, Overwrite: true}, map[string]string{"app": "db", "tier": "front"}, true, ""},
		{"remove", LabelRequest{Remove: []string{"tier"}}, map[string]string{"app": "web"}, true, ""},
		{"remove missing", LabelRequest{Remove: []string{"nope"}}, cur, false, ""},
	} {
		got, changed, err := relabel(cur, tc.req)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: err %v, want %q", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil || changed != tc.changed || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: %v %v %v, want %v %v", tc.name, got, changed, err, tc.want, tc.changed)
		}
	}
	if cur["app"] != "web" || len(cur) != 2 {
		t.Fatalf("relabel changed its input: %v", cur)
	}
}
