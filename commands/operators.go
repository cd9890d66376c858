package commands

import (
	"fmt"
	"strings"

	"poolbot/chat"
)

// Operator is a person allowed to change state, with the accounts that
// identify them on each network. One operator is one person across IRC
// and Slack: the two-person rule of !force/!confirm compares operators,
// not accounts.
type Operator struct {
	Name         string   `yaml:"name"`
	IRCAccounts  []string `yaml:"irc_accounts"`
	SlackUserIDs []string `yaml:"slack_user_ids"`
}

// Operators resolves a verified network account to an operator name.
type Operators struct {
	byAccount map[string]string // "network\x00account" → operator name
	names     map[string]bool
}

// NewOperators indexes ops. Account matching is case-insensitive on IRC
// (services accounts are) and exact on Slack (user IDs are opaque).
func NewOperators(ops []Operator) (*Operators, error) {
	o := &Operators{byAccount: map[string]string{}, names: map[string]bool{}}
	add := func(network, account, name string) error {
		k := key(network, account)
		if prev, dup := o.byAccount[k]; dup && prev != name {
			return fmt.Errorf("%s account %q is listed for both %q and %q", network, account, prev, name)
		}
		o.byAccount[k] = name
		return nil
	}
	for _, op := range ops {
		if op.Name == "" {
			return nil, fmt.Errorf("an operator has no name")
		}
		if o.names[op.Name] {
			return nil, fmt.Errorf("operator %q is listed twice", op.Name)
		}
		o.names[op.Name] = true
		for _, a := range op.IRCAccounts {
			if err := add("irc", a, op.Name); err != nil {
				return nil, err
			}
		}
		for _, a := range op.SlackUserIDs {
			if err := add("slack", a, op.Name); err != nil {
				return nil, err
			}
		}
	}
	return o, nil
}

func key(network, account string) string {
	if network == "irc" {
		account = strings.ToLower(account)
	}
	return network + "\x00" + account
}

// Identify returns the operator behind a message, or a refusal saying why
// the sender may not change state. It never looks at the nick.
func (o *Operators) Identify(m chat.Message) (operator string, refusal string) {
	switch {
	case !m.AccountKnown:
		return "", "refused: this network did not confirm who you are (the server did not acknowledge account-tag), so state-changing commands are disabled"
	case m.Account == "" && m.Network == "irc":
		return "", "refused: you are not logged in to a services account (identify with NickServ, then try again)"
	case m.Account == "":
		return "", "refused: your account is unknown"
	}
	if m.Network == "console" {
		// The console runs on the poolbot host; its operator is named on
		// the command line, and must still be a configured operator.
		if o.names[m.Account] {
			return m.Account, ""
		}
		return "", fmt.Sprintf("refused: %q is not a poolbot operator", m.Account)
	}
	if name, ok := o.byAccount[key(m.Network, m.Account)]; ok {
		return name, ""
	}
	return "", fmt.Sprintf("refused: %s account %q is not a poolbot operator", m.Network, m.Account)
}

// Lookup returns the operator name for a verified account.
func (o *Operators) Lookup(network, account string) (string, bool) {
	name, ok := o.byAccount[key(network, account)]
	return name, ok
}

// Known reports whether name is a configured operator.
func (o *Operators) Known(name string) bool { return o.names[name] }
