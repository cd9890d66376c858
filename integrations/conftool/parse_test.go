package conftool

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParseGetOutput(t *testing.T) {
	out := `{"codfw": {"pooled": true, "references": [], "ttl": 300}, "tags": "dnsdisc=apus"}
{"tags": "dnsdisc=apus", "eqiad": {"pooled": false, "references": ["x"], "ttl": 60}}

`
	got, err := ParseGetOutput([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	want := []Object{
		{Name: "codfw", Tags: "dnsdisc=apus", State: State{Pooled: true, TTL: 300, References: []string{}}},
		{Name: "eqiad", Tags: "dnsdisc=apus", State: State{Pooled: false, TTL: 60, References: []string{"x"}}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	if got[0].Tag("dnsdisc") != "apus" || got[0].Tag("name") != "" {
		t.Fatal("Tag")
	}
	if objs, err := ParseGetOutput(nil); err != nil || len(objs) != 0 {
		t.Fatalf("empty output: %v %v", objs, err)
	}
	// An object may even be called "tags".
	objs, err := ParseGetOutput([]byte(`{"tags": {"pooled": true}, "tags": "dnsdisc=apus"}`))
	if err != nil || objs[0].Name != "tags" || !objs[0].Pooled {
		t.Fatalf("object named tags: %+v %v", objs, err)
	}
}

func TestParseGetOutputRejects(t *testing.T) {
	for _, tc := range []struct{ out, want string }{
		{`not json`, "not JSON"},
		{`["codfw"]`, "not a JSON object"},
		{`{"codfw": {"pooled": "yes"}, "tags": "dnsdisc=apus"}`, "not a JSON boolean"},
		{`{"codfw": {"pooled": true, "ttl": "300"}, "tags": "dnsdisc=apus"}`, "ttl"},
		{`{"codfw": {"pooled": true}}`, `no "tags"`},
		{`{"tags": "dnsdisc=apus"}`, "no object"},
		{`{"codfw": {"pooled": true}, "eqiad": {"pooled": true}, "tags": "dnsdisc=apus"}`, "more than one object"},
		{`{"codfw": {"pooled": true}, "tags": "a", "tags": "b"}`, "twice"},
		{`{"codfw": {"pooled": true}, "tags": "dnsdisc=apus", "extra": 1}`, "unexpected field"},
		{`{"codfw": {"pooled": true}, "tags": "dnsdisc=apus"} trailing`, "trailing"},
		{`{"codfw": {"pooled": true}, "tags": "dnsdisc=apus"`, "not JSON"},
		{`The selector you chose has selected the following objects:`, "not JSON"},
	} {
		_, err := ParseGetOutput([]byte(tc.out))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.out, err, tc.want)
		}
	}
}

func TestParseSetOutput(t *testing.T) {
	changes, unexpected := ParseSetOutput([]byte("apus/codfw: pooled changed True => False\ncodfw: ttl changed 300 => 10\n\nOk to continue? [y/N]\n"))
	want := []FieldChange{
		{Object: "apus/codfw", Field: "pooled", From: "True", To: "False"},
		{Object: "codfw", Field: "ttl", From: "300", To: "10"},
	}
	if !reflect.DeepEqual(changes, want) || !reflect.DeepEqual(unexpected, []string{"Ok to continue? [y/N]"}) {
		t.Fatalf("changes %+v unexpected %q", changes, unexpected)
	}
	if c, u := ParseSetOutput([]byte("\n")); c != nil || u != nil {
		t.Fatal("a no-op set prints an empty line")
	}
}

func TestDecodeValueDefaults(t *testing.T) {
	st, err := decodeValue([]byte(`{}`))
	if err != nil || !reflect.DeepEqual(st, State{TTL: 300, References: []string{}}) {
		t.Fatalf("%+v %v", st, err)
	}
	st, err = decodeValue([]byte(`{"pooled": true, "references": ["a", 1], "ttl": 5}`))
	if err != nil || !reflect.DeepEqual(st, State{Pooled: true, TTL: 5, References: []string{"a", "1"}}) {
		t.Fatalf("%+v %v", st, err)
	}
	for _, bad := range []string{`null`, `[]`, `{"pooled": 1}`, `{"pooled": "true"}`, `{"ttl": 1.5}`, `{"ttl": -1}`, `{"references": {}}`} {
		if _, err := decodeValue([]byte(bad)); err == nil {
			t.Errorf("%s decoded", bad)
		}
	}
}

func TestCheckDepool(t *testing.T) {
	both := map[string]State{"eqiad": {Pooled: true}, "codfw": {Pooled: true}}
	only := map[string]State{"eqiad": {Pooled: false}, "codfw": {Pooled: true}}
	none := map[string]State{"eqiad": {Pooled: false}, "codfw": {Pooled: false}}
	if err := CheckDepool("apus", "codfw", both); err != nil {
		t.Fatal(err)
	}
	err := CheckDepool("apus", "codfw", only)
	var lp *LastPooledError
	if !errors.Is(err, ErrLastPooled) || !errors.As(err, &lp) || lp.Datacenter != "codfw" ||
		err.Error() != "Services apus cannot be depooled as they are only active in codfw" {
		t.Fatalf("err = %v", err)
	}
	if err := CheckDepool("apus", "eqiad", only); err != nil {
		t.Fatalf("depooling a depooled dc: %v", err)
	}
	if err := CheckDepool("apus", "eqiad", none); err != nil {
		t.Fatalf("depooling a depooled dc: %v", err)
	}
	if err := CheckDepool("apus", "ulsfo", both); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "codfw, eqiad") {
		t.Fatalf("unknown dc: %v", err)
	}
	if err := CheckDepool("apus", "codfw", map[string]State{"codfw": {Pooled: true}}); !errors.Is(err, ErrLastPooled) {
		t.Fatalf("single dc: %v", err)
	}
}

func FuzzParseGetOutput(f *testing.F) {
	f.Add([]byte(`{"codfw": {"pooled": true, "references": [], "ttl": 300}, "tags": "dnsdisc=apus"}` + "\n"))
	f.Add([]byte(`{"tags": "dnsdisc=apus", "eqiad": {"pooled": false, "references": ["x"], "ttl": 60, "extra": {}}}`))
	f.Add([]byte(`{"tags": {"pooled": true}, "tags": "dnsdisc=apus"}`))
	f.Add([]byte("\n\n{\"a\": {}, \"tags\": \"\"}\n{}\n"))
	f.Add([]byte(`The selector you chose has selected the following objects:`))
	f.Fuzz(func(t *testing.T, out []byte) {
		objs, err := ParseGetOutput(out)
		if err != nil {
			return
		}
		// Every parsed object must round-trip through the printed format.
		for _, o := range objs {
			refs, _ := json.Marshal(o.References)
			name, _ := json.Marshal(o.Name)
			tags, _ := json.Marshal(o.Tags)
			line := `{` + string(name) + `: {"pooled": ` + map[bool]string{true: "true", false: "false"}[o.Pooled] +
				`, "references": ` + string(refs) + `, "ttl": ` + itoa(o.TTL) + `}, "tags": ` + string(tags) + `}`
			again, err := ParseGetOutput([]byte(line))
			if err != nil || len(again) != 1 {
				t.Fatalf("re-parse of %s: %v", line, err)
			}
			if again[0].Name != o.Name || again[0].Tags != o.Tags || again[0].Pooled != o.Pooled || again[0].TTL != o.TTL {
				t.Fatalf("round trip %+v != %+v", again[0], o)
			}
			if o.TTL < 0 || o.References == nil {
				t.Fatalf("invalid state %+v", o.State)
			}
		}
	})
}

// FuzzMergePooled checks the write path: whatever decodes can be merged,
// the merge decodes to the same state with pooled set, and unknown fields
// are kept.
func FuzzMergePooled(f *testing.F) {
	f.Add([]byte(`{"pooled": true, "references": [], "ttl": 300}`), false)
	f.Add([]byte(`{"pooled": false, "note": "<&>", "nested": {"a": [1, null]}}`), true)
	f.Add([]byte(`{}`), true)
	f.Add([]byte(`{"ttl": 1e2}`), false)
	f.Fuzz(func(t *testing.T, stored []byte, pooled bool) {
		before, err := decodeValue(stored)
		if err != nil {
			if _, merr := mergePooled(stored, pooled); merr == nil {
				t.Fatalf("merged an unreadable value %q", stored)
			}
			return
		}
		merged, err := mergePooled(stored, pooled)
		if err != nil {
			t.Fatalf("merge of readable %q: %v", stored, err)
		}
		after, err := decodeValue(merged)
		if err != nil {
			t.Fatalf("merged value %q does not decode: %v", merged, err)
		}
		before.Pooled = pooled
		if !reflect.DeepEqual(before, after) {
			t.Fatalf("merge changed more than pooled: %+v -> %+v", before, after)
		}
		var in, out map[string]json.RawMessage
		_ = json.Unmarshal(stored, &in)
		if err := json.Unmarshal(merged, &out); err != nil {
			t.Fatal(err)
		}
		for k := range in {
			if _, ok := out[k]; !ok {
				t.Fatalf("field %q lost", k)
			}
		}
		if len(out) != len(in) && !(len(out) == len(in)+1 && in["pooled"] == nil) {
			t.Fatalf("fields %d -> %d", len(in), len(out))
		}
	})
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

func BenchmarkParseGetOutput(b *testing.B) {
	out := []byte(`{"codfw": {"pooled": true, "references": [], "ttl": 300}, "tags": "dnsdisc=apus"}` + "\n" +
		`{"eqiad": {"pooled": true, "references": [], "ttl": 300}, "tags": "dnsdisc=apus"}` + "\n")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseGetOutput(out); err != nil {
			b.Fatal(err)
		}
	}
}
