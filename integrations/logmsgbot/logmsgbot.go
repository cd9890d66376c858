// Package logmsgbot is the rule for trusting lines that Wikimedia's
// logmsgbot relays into the operations channel. Two parts of poolbot act
// on them: scap's "Started/Finished scap" lines open and close the scap
// gate (integrations/scap), and conftool's and cookbooks' "!log" lines name
// who made a change outside poolbot (watch). Anyone can say those words,
// so which sender counts is a security rule, and it is written here once.
package logmsgbot

import (
	"errors"
	"fmt"
	"slices"

	"poolbot/internal/ircname"
)

// DefaultNick is the relay's nick on Libera.Chat.
const DefaultNick = "logmsgbot"

// Config names the relay. It is one section of poolbot's config
// (logmsgbot:), read by the scap gate and the drift watch alike.
type Config struct {
	// Nicks are the nicks whose relayed lines are read (default
	// [logmsgbot]).
	Nicks []string `yaml:"nicks"`
	// Accounts, when set, also require the sender's services account
	// (IRCv3 account-tag) to be one of these. Empty trusts the nick alone,
	// which anyone who takes the nick can forge.
	Accounts []string `yaml:"accounts"`
}

// WithDefaults returns c with Nicks defaulted to [logmsgbot].
func (c Config) WithDefaults() Config {
	if c.Nicks == nil {
		c.Nicks = []string{DefaultNick}
	}
	return c
}

// Validate reports every problem, one per line, each starting with its key
// path relative to the section ("nicks[0]: …").
func (c Config) Validate() error {
	var errs []error
	if len(c.Nicks) == 0 {
		errs = append(errs, errors.New("nicks: must list at least one nick (the relay, usually logmsgbot)"))
	}
	for i, n := range c.Nicks {
		if err := ircname.CheckNick(n); err != nil {
			errs = append(errs, fmt.Errorf("nicks[%d]: not a valid IRC nick: %w", i, err))
		}
	}
	for i, a := range c.Accounts {
		if err := ircname.CheckAccount(a); err != nil {
			errs = append(errs, fmt.Errorf("accounts[%d]: not a valid account name: %w", i, err))
		}
	}
	return errors.Join(errs...)
}

// Sender is who said a channel line.
type Sender struct {
	// Network is the chat network the line came on ("irc", "slack", …).
	Network string
	Nick    string
	// Account is the sender's services account from the IRCv3 account
	// tag; "" when the server sent none.
	Account string
}

// Relay decides whether a channel line was relayed by logmsgbot. The zero
// value trusts no one.
type Relay struct {
	nicks    []string
	accounts []string
}

// New returns the Relay for c (defaults filled in).
func New(c Config) Relay {
	c = c.WithDefaults()
	return Relay{nicks: slices.Clone(c.Nicks), accounts: slices.Clone(c.Accounts)}
}

// NickOnly reports whether the relay is trusted by its nick alone (no
// account configured): worth a warning at start.
func (r Relay) NickOnly() bool { return len(r.accounts) == 0 }

// Trusts reports whether a line from s counts as logmsgbot's: its nick is
// one of the relay's and, when accounts are configured, so is its
// account (nicks and accounts compared under rfc1459 case mapping).
// logmsgbot relays on IRC only: on Slack anyone can pick "logmsgbot" as a
// display name, so no Slack line is trusted.
func (r Relay) Trusts(s Sender) bool {
	if s.Network == "slack" {
		return false
	}
	if !slices.ContainsFunc(r.nicks, func(n string) bool { return ircname.Equal(n, s.Nick) }) {
		return false
	}
	if len(r.accounts) == 0 {
		return true
	}
	return s.Account != "" && slices.ContainsFunc(r.accounts, func(a string) bool { return ircname.Equal(a, s.Account) })
}
