package alertmanager

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// Matcher is one API v2 silence matcher.
type Matcher struct {
	Name    string `json:"name"`
	Value   string `json:"value"`
	IsRegex bool   `json:"isRegex"`
	// IsEqual is false for a negative matcher; Alertmanager defaults it to
	// true, and spicerack never sends it, so neither does poolbot.
	IsEqual *bool `json:"isEqual,omitempty"`
}

// hostnamePattern accepts what a short or fully qualified hostname may be.
var hostnamePattern = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$`)

// ShortName cuts a hostname at its first dot, as spicerack does before
// matching the instance label.
func ShortName(host string) string {
	short, _, _ := strings.Cut(host, ".")
	return short
}

// HostMatchers returns the matchers spicerack's AlertmanagerHosts builds for
// hosts: instance =~ "^(h1|h2)(:[0-9]+)?$" over the short names, each escaped
// like Python's re.escape, so the silence covers the host and any of its
// exporters' ports.
func HostMatchers(hosts ...string) ([]Matcher, error) {
	if len(hosts) == 0 {
		return nil, errors.New("no host to silence")
	}
	names := make([]string, 0, len(hosts))
	for _, h := range hosts {
		if !hostnamePattern.MatchString(h) {
			return nil, fmt.Errorf("%q is not a hostname", h)
		}
		names = append(names, pyREEscape(ShortName(h)))
	}
	return []Matcher{{
		Name:    "instance",
		Value:   "^(" + strings.Join(names, "|") + ")(:[0-9]+)?$",
		IsRegex: true,
	}}, nil
}

// pySpecial is the set Python 3.7+'s re.escape escapes (re._special_chars_map).
const pySpecial = "()[]{}?*+-|^$\\.&~# \t\n\r\v\f"

// pyREEscape is Python's re.escape: a hostname "docker-registry2001" becomes
// "docker\-registry2001", the exact value spicerack sends.
func pyREEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(pySpecial, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Reason says why and for whom a host is silenced. Its String is the silence
// comment, shaped like spicerack's Reason ("<reason> - <user>@<host> - T123")
// with poolbot's request: "<reason> - <operator> via poolbot #<id> - <task>".
type Reason struct {
	Text      string // the request's reason, e.g. "restart docker-registry"
	RequestID int64  // poolbot's request id (#id)
	Operator  string // who asked, e.g. "alice"
	Task      string // Phabricator task, e.g. "T12345"; optional
}

var taskPattern = regexp.MustCompile(`^T[0-9]{1,9}$`)

// Validate refuses what spicerack's Reason refuses (double quotes) and what
// does not belong in a one-line comment.
func (r Reason) Validate() error {
	if strings.TrimSpace(r.Text) == "" {
		return errors.New("silence reason: empty")
	}
	if r.RequestID <= 0 {
		return fmt.Errorf("silence reason: request id %d is not positive", r.RequestID)
	}
	if strings.TrimSpace(r.Operator) == "" {
		return errors.New("silence reason: no operator")
	}
	for _, f := range []struct{ name, v string }{{"reason", r.Text}, {"operator", r.Operator}} {
		if strings.ContainsRune(f.v, '"') {
			return fmt.Errorf("silence %s: double quotes are not allowed (spicerack refuses them too)", f.name)
		}
		if strings.ContainsFunc(f.v, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return fmt.Errorf("silence %s: control characters are not allowed", f.name)
		}
	}
	if r.Task != "" && !taskPattern.MatchString(r.Task) {
		return fmt.Errorf("silence task: %q is not a task id like T12345", r.Task)
	}
	return nil
}

// String is the silence comment.
func (r Reason) String() string {
	s := fmt.Sprintf("%s - %s via poolbot #%d", r.Text, r.Operator, r.RequestID)
	if r.Task != "" {
		s += " - " + r.Task
	}
	return s
}
