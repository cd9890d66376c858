package spicerack

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// Fixtures printed by Python 3's json.dumps of spicerack's to_dict() with
// str() of aware UTC datetimes (the shape in the reference:
// {"<uuid4>": {"concurrency": 1, "created": "2023-07-16 16:46:52.161053+00:00", "owner": "user@host [12345]", "ttl": 600}}).
const (
	referenceValue = `{"4e2677c7-541a-4f9e-afbb-cfdb69c440a1": {"concurrency": 1, "created": "2023-07-16 16:46:52.161053+00:00", "owner": "user@host [12345]", "ttl": 600}}`
	// Two holders in insertion order, a created without microseconds, and
	// an owner exercising ensure_ascii (non-ASCII, astral, control, DEL).
	pythonTwoHolders = `{"4e2677c7-541a-4f9e-afbb-cfdb69c440a1": {"concurrency": 20, "created": "2026-12-07 02:30:00+00:00", "owner": "jdoe@cumin1003 [12345]", "ttl": 1800}, "0b7d0c4e-8f43-4a3b-9d36-2f6f0c1b9e11": {"concurrency": 1, "created": "2026-12-07 02:31:05.161053+00:00", "owner": "jos\u00e9@cumin2002 <&> \"q\" \ud83d\ude00 \u0001\u007f [7]", "ttl": 600}}`
	// Older spicerack: datetime.utcnow(), naive, no offset.
	naiveValue = `{"4e2677c7-541a-4f9e-afbb-cfdb69c440a1": {"concurrency": 5, "created": "2023-07-16 16:46:52.161053", "owner": "user@host [12345]", "ttl": 120}}`
)

func TestDecodeReferenceValue(t *testing.T) {
	hs, err := decodeHolders("/k", referenceValue)
	if err != nil {
		t.Fatal(err)
	}
	want := Holder{ID: "4e2677c7-541a-4f9e-afbb-cfdb69c440a1", Concurrency: 1, Owner: "user@host [12345]", TTL: 600 * time.Second,
		Created: time.Date(2023, 7, 16, 16, 46, 52, 161053000, time.UTC)}
	if len(hs) != 1 || hs[0] != want {
		t.Fatalf("got %+v\nwant %+v", hs, want)
	}
	if got := hs[0].Expires(); !got.Equal(want.Created.Add(10 * time.Minute)) {
		t.Errorf("expires %s", got)
	}
}

func TestEncodeIsByteIdenticalToPython(t *testing.T) {
	for _, v := range []string{referenceValue, pythonTwoHolders} {
		hs, err := decodeHolders("/k", v)
		if err != nil {
			t.Fatal(err)
		}
		if got := encodeHolders(hs); got != v {
			t.Errorf("re-encoded value differs from Python's\n got %s\nwant %s", got, v)
		}
	}
	hs, _ := decodeHolders("/k", pythonTwoHolders)
	if hs[1].Owner != "josé@cumin2002 <&> \"q\" 😀 \x01\x7f [7]" || hs[0].Created.Nanosecond() != 0 {
		t.Errorf("decoded %+v", hs)
	}
}

func TestDecodeNaiveCreatedIsUTC(t *testing.T) {
	hs, err := decodeHolders("/k", naiveValue)
	if err != nil {
		t.Fatal(err)
	}
	if !hs[0].Created.Equal(time.Date(2023, 7, 16, 16, 46, 52, 161053000, time.UTC)) {
		t.Fatalf("created %s", hs[0].Created)
	}
}

func TestDecodeMalformed(t *testing.T) {
	const key = "/spicerack/locks/cookbooks/sre.discovery.service-route:rw"
	h := `"concurrency": 1, "created": "2023-07-16 16:46:52+00:00", "owner": "u@h [1]", "ttl": 600`
	cases := map[string]string{
		"not json":        `{"a": `,
		"list":            `[]`,
		"string":          `"locked"`,
		"holder not dict": `{"a": 1}`,
		"missing field":   `{"a": {"concurrency": 1, "owner": "u@h [1]", "ttl": 600}}`,
		"extra field":     `{"a": {` + h + `, "pid": 4}}`,
		"negative conc":   `{"a": {"concurrency": -1, "created": "2023-07-16 16:46:52", "owner": "o", "ttl": 600}}`,
		"float ttl":       `{"a": {"concurrency": 1, "created": "2023-07-16 16:46:52", "owner": "o", "ttl": 1.5}}`,
		"zero ttl":        `{"a": {"concurrency": 1, "created": "2023-07-16 16:46:52", "owner": "o", "ttl": 0}}`,
		"string conc":     `{"a": {"concurrency": "1", "created": "2023-07-16 16:46:52", "owner": "o", "ttl": 600}}`,
		"bad created":     `{"a": {"concurrency": 1, "created": "yesterday", "owner": "o", "ttl": 600}}`,
		"owner not str":   `{"a": {"concurrency": 1, "created": "2023-07-16 16:46:52", "owner": 7, "ttl": 600}}`,
		"duplicate id":    `{"a": {` + h + `}, "a": {` + h + `}}`,
		"trailing":        `{"a": {` + h + `}} {}`,
	}
	for name, v := range cases {
		_, err := decodeHolders(key, v)
		var me *MalformedError
		if !errors.As(err, &me) || !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), key) {
			t.Errorf("%s: %v; want a MalformedError naming %s", name, err, key)
		}
	}
	if hs, err := decodeHolders(key, `{}`); err != nil || len(hs) != 0 {
		t.Errorf("empty dict: %v %v", hs, err)
	}
}

func TestFormatCreatedLikePythonStr(t *testing.T) {
	for _, tc := range []struct {
		t    time.Time
		want string
	}{
		{time.Date(2026, 12, 7, 2, 30, 0, 0, time.UTC), "2026-12-07 02:30:00+00:00"},
		{time.Date(2026, 12, 7, 2, 30, 0, 1000, time.UTC), "2026-12-07 02:30:00.000001+00:00"},
		{time.Date(2026, 12, 7, 2, 30, 0, 161053999, time.UTC), "2026-12-07 02:30:00.161053+00:00"},
		{time.Date(2026, 12, 7, 3, 30, 0, 0, time.FixedZone("CET", 3600)), "2026-12-07 02:30:00+00:00"},
	} {
		if got := formatCreated(tc.t); got != tc.want {
			t.Errorf("formatCreated(%s) = %s, want %s", tc.t, got, tc.want)
		}
	}
}

func TestAdmitFollowsSpicerack(t *testing.T) {
	now := time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC)
	live := Holder{ID: "a", Concurrency: 20, Created: now.Add(-time.Minute), Owner: "jdoe@cumin1003 [1]", TTL: 1800 * time.Second}
	expired := Holder{ID: "b", Concurrency: 1, Created: now.Add(-time.Hour), Owner: "dead@cumin1003 [2]", TTL: 600 * time.Second}
	me := Holder{ID: "me", Concurrency: 1, Created: now, Owner: "poolbot@deploy [3]", TTL: 600 * time.Second}

	// An expired holder is dropped and does not refuse.
	hs, err := admit(State{Key: "/k", Holders: []Holder{expired}}, me, now)
	if err != nil || len(hs) != 1 || hs[0].ID != "me" {
		t.Fatalf("only expired holder: %v %v", hs, err)
	}
	// A live cookbook run (concurrency 20) refuses poolbot's concurrency 1.
	_, err = admit(State{Key: "/k", Holders: []Holder{live}}, me, now)
	var he *HeldError
	if !errors.As(err, &he) || he.Concurrency != 1 || len(he.Holders) != 1 || he.Holders[0].Owner != live.Owner {
		t.Fatalf("live holder: %v", err)
	}
	// poolbot's concurrency-1 holder refuses a cookbook asking for 20.
	cookbook := Holder{ID: "c", Concurrency: 20, Created: now, Owner: "jdoe@cumin1003 [9]", TTL: 1800 * time.Second}
	if _, err := admit(State{Key: "/k", Holders: []Holder{me}}, cookbook, now); !errors.As(err, &he) || he.Concurrency != 1 {
		t.Fatalf("poolbot holding: %v", err)
	}
	// Concurrency 0: unlimited but tracked.
	free := Holder{ID: "f", Concurrency: 0, Created: now, Owner: "x", TTL: time.Minute}
	if hs, err := admit(State{Key: "/k", Holders: []Holder{free}}, Holder{ID: "g", Created: now, TTL: time.Minute}, now); err != nil || len(hs) != 2 {
		t.Fatalf("unlimited: %v %v", hs, err)
	}
	// spicerack counts expired holders against a live holder's limit.
	two := Holder{ID: "t", Concurrency: 2, Created: now, Owner: "x", TTL: time.Minute}
	if _, err := admit(State{Key: "/k", Holders: []Holder{two, expired}}, Holder{ID: "g", Created: now, TTL: time.Minute}, now); !errors.As(err, &he) {
		t.Fatalf("expired counted like spicerack: %v", err)
	}
	if !strings.Contains(he.Error(), "x (since") {
		t.Errorf("error %q", he)
	}
}
