package spicerack

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"poolbot/internal/pyjson"
)

// Holder is one concurrent holder of a lock key.
type Holder struct {
	ID          string // the holder's uuid4 (the dict key)
	Concurrency int    // 0 = unlimited but tracked
	Created     time.Time
	Owner       string // "user@host [pid]"
	TTL         time.Duration
}

// Expires is when the holder's lock lapses: created + ttl.
func (h Holder) Expires() time.Time { return h.Created.Add(h.TTL) }

// Expired applies spicerack's rule: created + ttl < now.
func (h Holder) Expired(now time.Time) bool { return h.Expires().Before(now) }

func (h Holder) String() string {
	return fmt.Sprintf("%s (since %s, expires %s, concurrency %d)",
		h.Owner, h.Created.UTC().Format("2006-01-02 15:04:05 MST"), h.Expires().UTC().Format("2006-01-02 15:04:05 MST"), h.Concurrency)
}

// MalformedError is a lock value spicerack could not read either. The gate
// it guards stays closed.
type MalformedError struct {
	Key    string
	Reason string
}

func (e *MalformedError) Error() string {
	return fmt.Sprintf("spicerack lock %s holds a malformed value: %s", e.Key, e.Reason)
}

// ErrMalformed matches every *MalformedError (errors.Is).
var ErrMalformed = errors.New("malformed spicerack lock value")

func (e *MalformedError) Is(target error) bool { return target == ErrMalformed }

// holderFields are the fields of one holder, in the order spicerack's
// to_dict writes them.
var holderFields = [...]string{"concurrency", "created", "owner", "ttl"}

// decodeHolders parses a lock value, keeping the holders' order (Python
// dicts keep insertion order, and the rewritten value must too).
func decodeHolders(key, value string) ([]Holder, error) {
	bad := func(format string, a ...any) error {
		return &MalformedError{Key: key, Reason: fmt.Sprintf(format, a...)}
	}
	dec := json.NewDecoder(strings.NewReader(value))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, bad("not JSON: %v (value %s)", err, short(value))
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, bad("not a JSON object of holders (value %s)", short(value))
	}
	var holders []Holder
	seen := make(map[string]bool)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, bad("not JSON: %v (value %s)", err, short(value))
		}
		id := tok.(string)
		if seen[id] {
			return nil, bad("holder %q listed twice", id)
		}
		seen[id] = true
		var raw map[string]json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, bad("holder %q is not an object: %v", id, err)
		}
		h, err := decodeHolder(id, raw)
		if err != nil {
			return nil, bad("holder %q: %v", id, err)
		}
		holders = append(holders, h)
	}
	if _, err := dec.Token(); err != nil {
		return nil, bad("not JSON: %v (value %s)", err, short(value))
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, bad("trailing data after the object (value %s)", short(value))
	}
	return holders, nil
}

func decodeHolder(id string, raw map[string]json.RawMessage) (Holder, error) {
	for _, f := range holderFields {
		if _, ok := raw[f]; !ok {
			return Holder{}, fmt.Errorf("field %q missing", f)
		}
	}
	if len(raw) != len(holderFields) {
		// spicerack's ConcurrentLock(**fields) fails on any other field.
		for f := range raw {
			if !slices.Contains(holderFields[:], f) {
				return Holder{}, fmt.Errorf("unknown field %q", f)
			}
		}
	}
	h := Holder{ID: id}
	if err := json.Unmarshal(raw["concurrency"], &h.Concurrency); err != nil || h.Concurrency < 0 {
		return Holder{}, fmt.Errorf("concurrency %s is not a non-negative integer", raw["concurrency"])
	}
	var ttl int64
	if err := json.Unmarshal(raw["ttl"], &ttl); err != nil || ttl <= 0 || ttl > 10*365*86400 {
		return Holder{}, fmt.Errorf("ttl %s is not a positive integer number of seconds", raw["ttl"])
	}
	h.TTL = time.Duration(ttl) * time.Second
	if err := json.Unmarshal(raw["owner"], &h.Owner); err != nil {
		return Holder{}, fmt.Errorf("owner %s is not a string", raw["owner"])
	}
	var created string
	if err := json.Unmarshal(raw["created"], &created); err != nil {
		return Holder{}, fmt.Errorf("created %s is not a string", raw["created"])
	}
	t, err := parseCreated(created)
	if err != nil {
		return Holder{}, err
	}
	h.Created = t
	return h, nil
}

// createdLayouts are what Python's datetime.fromisoformat reads from
// str(datetime): space or T separator, optional fraction, optional offset;
// no offset means naive UTC (datetime.utcnow(), older spicerack).
var createdLayouts = []string{
	"2006-01-02 15:04:05.999999-07:00",
	"2006-01-02T15:04:05.999999-07:00",
	"2006-01-02 15:04:05.999999",
	"2006-01-02T15:04:05.999999",
}

func parseCreated(s string) (time.Time, error) {
	for _, layout := range createdLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("created %q is not a datetime like 2023-07-16 16:46:52.161053+00:00", s)
}

// formatCreated is Python's str() of an aware UTC datetime: microseconds
// only when not zero, then "+00:00".
func formatCreated(t time.Time) string {
	t = t.UTC().Truncate(time.Microsecond)
	s := t.Format("2006-01-02 15:04:05")
	if us := t.Nanosecond() / 1000; us != 0 {
		s += fmt.Sprintf(".%06d", us)
	}
	return s + "+00:00"
}

// encodeHolders is spicerack's KeyLocks.to_json: Python's json.dumps with
// its default separators (", " and ": ") and ensure_ascii, holders in order,
// each holder's fields in to_dict's order.
func encodeHolders(holders []Holder) string {
	var b strings.Builder
	b.WriteByte('{')
	for i, h := range holders {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(pyString(h.ID))
		b.WriteString(": {\"concurrency\": ")
		b.WriteString(strconv.Itoa(h.Concurrency))
		b.WriteString(", \"created\": ")
		b.WriteString(pyString(formatCreated(h.Created)))
		b.WriteString(", \"owner\": ")
		b.WriteString(pyString(h.Owner))
		b.WriteString(", \"ttl\": ")
		b.WriteString(strconv.FormatInt(int64(h.TTL/time.Second), 10))
		b.WriteByte('}')
	}
	b.WriteByte('}')
	return b.String()
}

// pyString is s as Python's json.dumps writes it (ensure_ascii=True).
func pyString(s string) string { return pyjson.Quote(s) }

func short(s string) string {
	if len(s) > 120 {
		return strconv.Quote(s[:120]) + "…"
	}
	return strconv.Quote(s)
}
