// Package secret is how poolbot's config names a secret (a password, a
// token, a cookie, a passphrase): always the same way, a file or an
// environment variable, never the value in the YAML itself.
//
//	password: {file: /run/credentials/poolbot.service/etcd-password}
//	token: {env: SPIDERPIG_TOKEN}
package secret

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"unicode/utf8"
)

// Ref names where a secret is read from: File or Env, not both.
type Ref struct {
	// File holds the secret; a trailing newline is ignored.
	File string `yaml:"file"`
	// Env names an environment variable holding the secret.
	Env string `yaml:"env"`
}

// IsSet reports whether a source is configured.
func (r Ref) IsSet() bool { return r.File != "" || r.Env != "" }

// String never shows the secret, only where it comes from.
func (r Ref) String() string {
	switch {
	case r.File != "":
		return "file:" + r.File
	case r.Env != "":
		return "env:" + r.Env
	}
	return "unset"
}

// Validate checks the reference itself (not the secret): not both sources.
func (r Ref) Validate() error {
	if r.File != "" && r.Env != "" {
		return errors.New("set either file or env, not both")
	}
	return nil
}

// Read returns the secret. Trailing line ends (a file's final newline)
// are dropped, nothing else: a passphrase may end in a space. An empty
// secret, or one with a control character or invalid UTF-8 inside (it
// goes into HTTP headers and protocol lines), is an error. Errors name
// the file or the variable, never the secret.
func (r Ref) Read() (string, error) {
	var raw, source string
	switch {
	case r.File != "" && r.Env != "":
		return "", errors.New("set either file or env, not both")
	case r.File != "":
		source = "secret file " + r.File
		b, err := os.ReadFile(r.File)
		if err != nil {
			return "", fmt.Errorf("read secret file: %w", err)
		}
		raw = string(b)
	case r.Env != "":
		source = "environment variable " + r.Env
		raw = os.Getenv(r.Env)
	default:
		return "", errors.New("no secret source configured")
	}
	s := strings.TrimRight(raw, "\r\n")
	if s == "" {
		if r.Env != "" {
			return "", fmt.Errorf("environment variable %s is empty or unset", r.Env)
		}
		return "", fmt.Errorf("%s is empty", source)
	}
	if !utf8.ValidString(s) || strings.IndexFunc(s, func(c rune) bool { return c < 0x20 || c == 0x7f }) >= 0 {
		return "", fmt.Errorf("%s contains a control character, a second line or invalid UTF-8", source)
	}
	return s, nil
}
