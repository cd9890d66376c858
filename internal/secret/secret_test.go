package secret

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRead(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	t.Setenv("POOLBOT_TEST_SECRET", "from env")
	for _, c := range []struct {
		ref  Ref
		want string
	}{
		{Ref{File: write("nl", "s3cret\n")}, "s3cret"},
		{Ref{File: write("crlf", "s3cret\r\n")}, "s3cret"},
		{Ref{File: write("space", "pass phrase \n")}, "pass phrase "},
		{Ref{Env: "POOLBOT_TEST_SECRET"}, "from env"},
	} {
		if got, err := c.ref.Read(); err != nil || got != c.want {
			t.Errorf("%s: %q, %v; want %q", c.ref, got, err, c.want)
		}
	}
	for _, c := range []struct {
		ref  Ref
		want string
	}{
		{Ref{File: write("empty", "\n")}, "is empty"},
		{Ref{File: write("two", "a\nb\n")}, "a second line"},
		{Ref{File: write("bad", "a\xffb")}, "invalid UTF-8"},
		{Ref{File: filepath.Join(dir, "missing")}, "read secret file"},
		{Ref{Env: "POOLBOT_TEST_UNSET_SECRET"}, "is empty or unset"},
		{Ref{File: "/x", Env: "X"}, "not both"},
		{Ref{}, "no secret source"},
	} {
		got, err := c.ref.Read()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %q, %v; want an error with %q", c.ref, got, err, c.want)
		}
	}
	if err := (Ref{File: write("leak", "hunter2\x00")}).Validate(); err != nil {
		t.Fatal(err)
	}
	if _, err := (Ref{File: filepath.Join(dir, "leak")}).Read(); err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("error %v leaks the secret", err)
	}
}
