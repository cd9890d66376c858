package scap

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// The want strings were produced by CPython 3's json.dumps(info, indent=4)
// with scap's key order; they pin the byte layout scap writes and reads.
func TestMarshalScapMatchesPythonJSONDumps(t *testing.T) {
	cases := []struct {
		info LockInfo
		want string
	}{
		{
			LockInfo{Locker: "poolbot", PID: 4242, TimestampUTC: "Thu Apr  2 14:09:39 2026", Reason: "poolbot #42: depool apus in codfw (T422166)"},
			"{\n    \"locker\": \"poolbot\",\n    \"pid\": 4242,\n    \"timestamp_utc\": \"Thu Apr  2 14:09:39 2026\",\n    \"reason\": \"poolbot #42: depool apus in codfw (T422166)\"\n}",
		},
		{
			LockInfo{Locker: "jdoe", PID: 1, TimestampUTC: "Mon Dec 21 03:04:05 2026", Reason: "h\u00e9llo <b>&\"\\\x7f \u2028 \U0001F600 tab\there"},
			"{\n    \"locker\": \"jdoe\",\n    \"pid\": 1,\n    \"timestamp_utc\": \"Mon Dec 21 03:04:05 2026\",\n    \"reason\": \"h\\u00e9llo <b>&\\\"\\\\\\u007f \\u2028 \\ud83d\\ude00 tab\\there\"\n}",
		},
		{
			LockInfo{},
			"{\n    \"locker\": \"\",\n    \"pid\": 0,\n    \"timestamp_utc\": \"\",\n    \"reason\": \"\"\n}",
		},
	}
	for _, c := range cases {
		if got := string(c.info.MarshalScap()); got != c.want {
			t.Errorf("MarshalScap(%+v)\n got %q\nwant %q", c.info, got, c.want)
		}
	}
}

func TestAsctimeLayoutPadsDayWithSpace(t *testing.T) {
	ts := time.Date(2026, 4, 2, 14, 9, 39, 0, time.UTC)
	if got := ts.Format(AsctimeLayout); got != "Thu Apr  2 14:09:39 2026" {
		t.Fatalf("got %q", got)
	}
	info := LockInfo{TimestampUTC: "Thu Apr  2 14:09:39 2026"}
	got, ok := info.Time()
	if !ok || !got.Equal(ts) {
		t.Fatalf("Time() = %v, %v", got, ok)
	}
	if _, ok := (LockInfo{TimestampUTC: "2026-04-02T14:09:39Z"}).Time(); ok {
		t.Fatal("an ISO timestamp is not asctime")
	}
}

func TestParseLockBody(t *testing.T) {
	cases := []struct {
		name string
		body string
		info *LockInfo
		raw  string
	}{
		{"empty", "", nil, ""},
		{"whitespace", " \n", nil, ""},
		{"released", "{}", nil, ""},
		{"all empty fields", `{"locker": "", "pid": 0}`, nil, ""},
		{"scap", "{\n    \"locker\": \"jdoe\",\n    \"pid\": 31337,\n    \"timestamp_utc\": \"Thu Apr  2 14:09:39 2026\",\n    \"reason\": \"Backport for [[gerrit:42|x (T1)]]\"\n}",
			&LockInfo{Locker: "jdoe", PID: 31337, TimestampUTC: "Thu Apr  2 14:09:39 2026", Reason: "Backport for [[gerrit:42|x (T1)]]"}, ""},
		{"extra fields and string pid", `{"locker":"a","pid":"12","extra":[1,2]}`, &LockInfo{Locker: "a", PID: 12}, ""},
		{"old scap bare reason", "deploying T123\nsecond line", nil, "deploying T123"},
		{"broken json", `{"locker": "jdoe"`, nil, `{"locker": "jdoe"`},
		{"control chars", "bad\x1b[31mred", nil, "bad [31mred"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			info, raw := ParseLockBody([]byte(c.body))
			if (info == nil) != (c.info == nil) || info != nil && *info != *c.info {
				t.Errorf("info = %+v, want %+v", info, c.info)
			}
			if raw != c.raw {
				t.Errorf("raw = %q, want %q", raw, c.raw)
			}
		})
	}
}

func FuzzMarshalScap(f *testing.F) {
	f.Add("poolbot", 4242, "Thu Apr  2 14:09:39 2026", "depool apus T422166")
	f.Add("j\"doe", 0, "", "\x00\x1f\x7f\u2028\U0001F600<>&\\")
	f.Fuzz(func(t *testing.T, locker string, pid int, ts, reason string) {
		if !utf8.ValidString(locker) || !utf8.ValidString(ts) || !utf8.ValidString(reason) {
			t.Skip() // Python strings cannot hold invalid UTF-8
		}
		in := LockInfo{Locker: locker, PID: pid, TimestampUTC: ts, Reason: reason}
		out := in.MarshalScap()
		for _, b := range out {
			if b >= 0x80 || b < 0x20 && b != '\n' {
				t.Fatalf("non-ASCII or control byte %#x in %q", b, out)
			}
		}
		var back LockInfo
		if err := json.Unmarshal(out, &back); err != nil {
			t.Fatalf("output is not JSON: %v: %q", err, out)
		}
		if back != in {
			t.Fatalf("round trip: got %+v, want %+v", back, in)
		}
		if !strings.HasPrefix(string(out), "{\n    \"locker\": ") || !strings.HasSuffix(string(out), "\n}") {
			t.Fatalf("layout: %q", out)
		}
	})
}

func FuzzParseLockBody(f *testing.F) {
	f.Add([]byte("{}"))
	f.Add(LockInfo{Locker: "jdoe", PID: 1, TimestampUTC: "Thu Apr  2 14:09:39 2026", Reason: "r"}.MarshalScap())
	f.Add([]byte("plain reason\nmore"))
	f.Add([]byte(`{"pid": 1e400}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		info, raw := ParseLockBody(body)
		if info != nil && raw != "" {
			t.Fatal("both info and raw")
		}
		if len(raw) > 200 || strings.ContainsAny(raw, "\r\n\x00") || !utf8.ValidString(raw) {
			t.Fatalf("raw not a safe bounded line: %q", raw)
		}
		if info != nil {
			if info.Empty() || info.PID < 0 {
				t.Fatalf("bad info %+v", info)
			}
			for _, s := range []string{info.Locker, info.Reason, info.TimestampUTC} {
				if strings.ContainsAny(s, "\r\n\x00") || len(s) > 500 {
					t.Fatalf("unsafe field %q", s)
				}
			}
		}
	})
}
