// Package ircname is the one rule for IRC nicks and services account
// names in poolbot: which strings are valid (the bot's own nick, the
// relay's nick, a deployer's nick on the Deployments page) and when two
// of them are the same (rfc1459 case mapping, which Libera.Chat and
// InspIRCd use).
package ircname

import (
	"errors"
	"fmt"
	"strings"
)

// MaxNick is the longest nick accepted, in bytes: InspIRCd's default
// NICKLEN (Libera.Chat's is 16). Line budgets count on it.
const MaxNick = 30

// MaxAccount is the longest services account name accepted, in bytes.
const MaxAccount = 64

// specials are the non-alphanumeric characters RFC 2812 allows in a nick.
const specials = "[]\\`_^{|}-"

// CheckNick says why s cannot be an IRC nick, or returns nil: RFC 2812
// letters, digits and []\`_^{|}-, not starting with a digit or '-', at
// most MaxNick bytes.
func CheckNick(s string) error {
	if s == "" {
		return errors.New("required")
	}
	if len(s) > MaxNick {
		return fmt.Errorf("%q is longer than %d bytes", s, MaxNick)
	}
	if c := s[0]; c >= '0' && c <= '9' || c == '-' {
		return fmt.Errorf("%q must not start with a digit or '-'", s)
	}
	if !nickChars(s) {
		return fmt.Errorf("%q: only letters, digits and %s are allowed", s, specials)
	}
	return nil
}

// ValidNick reports whether CheckNick accepts s.
func ValidNick(s string) bool { return CheckNick(s) == nil }

// CheckAccount says why s cannot be a services account name, or returns
// nil: the nick characters, at most MaxAccount bytes; unlike a nick it may
// start with a digit (some services allow it).
func CheckAccount(s string) error {
	if s == "" {
		return errors.New("required")
	}
	if len(s) > MaxAccount {
		return fmt.Errorf("%q is longer than %d bytes", s, MaxAccount)
	}
	if !nickChars(s) {
		return fmt.Errorf("%q: only letters, digits and %s are allowed", s, specials)
	}
	return nil
}

func nickChars(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte(specials, c) >= 0) {
			return false
		}
	}
	return true
}

// Fold maps a nick or account to its rfc1459 canonical form: ASCII lower
// case, and []\~ are the upper case of {}|^.
func Fold(s string) string {
	b := []byte(s)
	for i, c := range b {
		switch {
		case c >= 'A' && c <= 'Z':
			b[i] = c + ('a' - 'A')
		case c == '[':
			b[i] = '{'
		case c == ']':
			b[i] = '}'
		case c == '\\':
			b[i] = '|'
		case c == '~':
			b[i] = '^'
		}
	}
	return string(b)
}

// Equal reports whether a and b are the same nick under rfc1459 case
// mapping.
func Equal(a, b string) bool { return len(a) == len(b) && Fold(a) == Fold(b) }
