package ircname

import (
	"strings"
	"testing"
)

func TestCheckNick(t *testing.T) {
	for _, ok := range []string{"logmsgbot", "poolbot_0", "a", "[Bot]", "x-y", "A^`|{}\\", strings.Repeat("n", MaxNick)} {
		if err := CheckNick(ok); err != nil {
			t.Errorf("CheckNick(%q) = %v, want nil", ok, err)
		}
	}
	for bad, want := range map[string]string{
		"":                             "required",
		"9lives":                       "must not start with a digit",
		"-x":                           "must not start with a digit or '-'",
		"log msgbot":                   "only letters, digits",
		"bot\x00":                      "only letters, digits",
		"ü":                            "only letters, digits",
		strings.Repeat("n", MaxNick+1): "longer than 30 bytes",
		"#chan":                        "only letters, digits",
		"nick!user":                    "only letters, digits",
	} {
		if err := CheckNick(bad); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("CheckNick(%q) = %v, want %q", bad, err, want)
		}
	}
}

func TestCheckAccount(t *testing.T) {
	for _, ok := range []string{"logmsgbot", "9lives", strings.Repeat("a", MaxAccount)} {
		if err := CheckAccount(ok); err != nil {
			t.Errorf("CheckAccount(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "a b", strings.Repeat("a", MaxAccount+1), "x\ny"} {
		if CheckAccount(bad) == nil {
			t.Errorf("CheckAccount(%q) = nil, want an error", bad)
		}
	}
}

func TestEqual(t *testing.T) {
	if !Equal("LOG[BOT]", "log{bot}") || !Equal("a\\~", "A|^") {
		t.Error("rfc1459 case mapping not applied")
	}
	if Equal("logmsgbot", "logmsgbot_") || Equal("a", "b") {
		t.Error("different nicks compared equal")
	}
}
