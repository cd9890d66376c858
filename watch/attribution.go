package watch

import (
	"context"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"

	"poolbot/chat"
	"poolbot/integrations/logmsgbot"
)

// Who changed a discovery object is not in etcd. It is in the channel:
// confctl announces every successful change through logmsgbot as
//
//	!log <user>@<host> conftool action : set/pooled=false; selector: dnsdisc=apus,name=codfw
//
// ("select" mode; the selector values are regular expressions anchored at
// both ends). The older "tags" mode says
//
//	!log <user>@<host> conftool action : set/pooled=false; selector: codfw (tags: ['dnsdisc=apus'])
//
// where the name is literal, "all", or "re:<regex>" (anchored at the start
// only, as Python's re.match), and "find" mode says only the object name.
// spicerack's conftool calls post no such line; the cookbook that changes
// discovery records says instead
//
//	!log <user>@<host> START - Cookbook sre.discovery.service-route depool apus in codfw: <reason>
//
// (and an END (PASS|FAIL) line after its TTL wait). Attribution only ever
// names who made a change the watch saw in etcd; a line alone changes
// nothing.

// maxLogLines bounds the lines an Attributor keeps.
const maxLogLines = 64

// maxLogLineBytes bounds what is parsed: an IRC line is at most 512 bytes.
const maxLogLineBytes = 1024

// maxSelectorExprBytes bounds one selector expression compiled as a
// regular expression (real ones are a few names long).
const maxSelectorExprBytes = 200

// LogLine is one parsed conftool or cookbook !log line about discovery
// objects' pooled state.
type LogLine struct {
	// Who is "user@host".
	Who string
	// Kind is "conftool" or "cookbook".
	Kind string
	// Pooled is the value the line sets.
	Pooled bool
	// At is when the line was seen.
	At time.Time

	services nameMatcher
	dcs      nameMatcher
}

// Matches reports whether the line is about setting service's object in
// datacenter to pooled.
func (l LogLine) Matches(service, datacenter string, pooled bool) bool {
	return l.Pooled == pooled && l.services.match(service) && l.dcs.match(datacenter)
}

// nameMatcher matches a service or datacenter name the way conftool's
// selector did.
type nameMatcher struct {
	any      bool
	literals []string
	re       *regexp.Regexp
}

func (m nameMatcher) match(name string) bool {
	switch {
	case m.any:
		return true
	case m.re != nil:
		return m.re.MatchString(name)
	}
	return slices.Contains(m.literals, name)
}

// selectorExprPattern is what a selector expression may contain to be
// compiled: names, alternation, groups, classes and the unbounded
// repetitions real selectors use ("(apus|thanos-swift)", "eq.*"). Counted
// repetition and escapes (Unicode classes) are left out: they are what
// makes a short pattern compile to a huge program.
var selectorExprPattern = regexp.MustCompile(`^[a-z0-9_.*+?()|^$\[\]-]+$`)

// regexMatcher compiles a conftool selector expression. Python's and Go's
// syntaxes share what selectors use; an expression outside that subset, or
// one Go cannot compile, is compared literally (it then matches only
// itself).
func regexMatcher(expr string, anchorEnd bool) nameMatcher {
	if !strings.ContainsAny(expr, `.*+?()[]{}|^$\`) || len(expr) > maxSelectorExprBytes ||
		!selectorExprPattern.MatchString(expr) {
		return nameMatcher{literals: []string{expr}}
	}
	pat := "^(?:" + expr + ")"
	if anchorEnd {
		pat += "$"
	}
	re, err := regexp.Compile(pat)
	if err != nil {
		return nameMatcher{literals: []string{expr}}
	}
	return nameMatcher{re: re}
}

var (
	whoPattern      = regexp.MustCompile(`^[A-Za-z0-9._-]{1,32}@[A-Za-z0-9._-]{1,64}$`)
	cookbookPattern = regexp.MustCompile(`^(?:START|(?:END|DONE) \([A-Z]+\)) - Cookbook sre\.discovery\.service-route (?:\(exit_code=-?\d+\) )?(depool|pool) ([a-z0-9_,-]+) in ([a-z0-9_-]+)(?::|$)`)
)

// ParseLogLine parses a channel message that may be a conftool or
// discovery-cookbook !log line. ok is false for anything else, including
// conftool actions that do not set pooled to true or false (node objects
// use yes/no/inactive).
func ParseLogLine(text string) (LogLine, bool) {
	if len(text) > maxLogLineBytes {
		return LogLine{}, false
	}
	rest, ok := strings.CutPrefix(text, "!log ")
	if !ok {
		return LogLine{}, false
	}
	who, rest, ok := strings.Cut(strings.TrimLeft(rest, " "), " ")
	if !ok || !whoPattern.MatchString(who) {
		return LogLine{}, false
	}
	if body, ok := strings.CutPrefix(rest, "conftool action : "); ok {
		l, ok := parseConftoolAction(body)
		l.Who = who
		return l, ok
	}
	if m := cookbookPattern.FindStringSubmatch(rest); m != nil {
		return LogLine{Who: who, Kind: "cookbook", Pooled: m[1] == "pool",
			services: nameMatcher{literals: strings.Split(m[2], ",")},
			dcs:      nameMatcher{literals: []string{m[3]}}}, true
	}
	return LogLine{}, false
}

// parseConftoolAction parses "<action>; selector: <selector>".
func parseConftoolAction(body string) (LogLine, bool) {
	action, selector, ok := strings.Cut(body, "; selector: ")
	if !ok {
		return LogLine{}, false
	}
	setArgs, ok := strings.CutPrefix(action, "set/")
	if !ok {
		return LogLine{}, false
	}
	l := LogLine{Kind: "conftool"}
	found := false
	for _, kv := range strings.Split(setArgs, ":") {
		k, v, _ := strings.Cut(kv, "=")
		if k != "pooled" {
			continue
		}
		switch strings.ToLower(v) {
		case "true":
			l.Pooled, found = true, true
		case "false":
			l.Pooled, found = false, true
		default:
			return LogLine{}, false // a node's yes/no/inactive
		}
	}
	if !found {
		return LogLine{}, false
	}
	selector = strings.TrimSpace(selector)

	// tags mode: "<name> (tags: ['dnsdisc=apus'])".
	if name, tags, ok := strings.Cut(selector, " (tags: "); ok {
		tags = strings.TrimSuffix(tags, ")")
		tags = strings.TrimSuffix(strings.TrimPrefix(tags, "["), "]")
		service := ""
		for _, t := range strings.Split(tags, ",") {
			t = strings.Trim(strings.TrimSpace(t), `'"`)
			if v, ok := strings.CutPrefix(t, "dnsdisc="); ok {
				service = v
			}
		}
		if service == "" {
			return LogLine{}, false // not a discovery object
		}
		l.services = nameMatcher{literals: []string{service}}
		switch {
		case name == "all":
			l.dcs = nameMatcher{any: true}
		case strings.HasPrefix(name, "re:"):
			l.dcs = regexMatcher(strings.TrimPrefix(name, "re:"), false)
		default:
			l.dcs = nameMatcher{literals: []string{name}}
		}
		return l, true
	}

	// select mode: "dnsdisc=apus,name=codfw", values anchored regexes.
	if strings.Contains(selector, "=") {
		l.dcs = nameMatcher{any: true}
		haveService := false
		for _, part := range strings.Split(selector, ",") {
			k, expr, ok := strings.Cut(part, "=")
			if !ok {
				return LogLine{}, false
			}
			switch k {
			case "dnsdisc":
				l.services, haveService = regexMatcher(expr, true), true
			case "name":
				l.dcs = regexMatcher(expr, true)
			}
		}
		return l, haveService
	}

	// find mode: the object name alone, in every service.
	if selector == "" || strings.ContainsAny(selector, " \t") {
		return LogLine{}, false
	}
	l.services = nameMatcher{any: true}
	l.dcs = nameMatcher{literals: []string{selector}}
	return l, true
}

// Attributor keeps the recent trusted conftool and cookbook !log lines of
// the channel, so a drift can name who made it. It is a chat.Handler
// observer. Safe for concurrent use.
type Attributor struct {
	relay  logmsgbot.Relay
	window time.Duration
	clock  clockwork.Clock

	mu    sync.Mutex
	lines []LogLine
}

var _ chat.Handler = (*Attributor)(nil)

// NewAttributor returns an Attributor keeping the lines relay trusts for
// window.
func NewAttributor(relay logmsgbot.Relay, window time.Duration, clock clockwork.Clock) *Attributor {
	if clock == nil {
		clock = clockwork.NewRealClock()
	}
	return &Attributor{relay: relay, window: window, clock: clock}
}

// HandleMessage implements chat.Handler: channel lines from the relay that
// parse are kept (the relay refuses Slack, where a display name proves
// nothing).
func (a *Attributor) HandleMessage(_ context.Context, m chat.Message, _ chat.Replier) {
	if m.Private() {
		return
	}
	a.Observe(logmsgbot.Sender{Network: m.Network, Nick: m.Nick, Account: m.Account}, m.Text)
}

// Observe feeds one channel line; it reports whether it was kept.
func (a *Attributor) Observe(from logmsgbot.Sender, text string) bool {
	if !a.relay.Trusts(from) {
		return false
	}
	l, ok := ParseLogLine(text)
	if !ok {
		return false
	}
	l.At = a.clock.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	a.pruneLocked(l.At)
	a.lines = append(a.lines, l)
	if len(a.lines) > maxLogLines {
		a.lines = slices.Delete(a.lines, 0, len(a.lines)-maxLogLines)
	}
	return true
}

// Who returns who set service's object in datacenter to pooled: the user
// of the newest matching line seen between from and to; "" when none.
func (a *Attributor) Who(service, datacenter string, pooled bool, from, to time.Time) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.pruneLocked(a.clock.Now())
	for i := len(a.lines) - 1; i >= 0; i-- {
		l := a.lines[i]
		if l.At.Before(from) || l.At.After(to) {
			continue
		}
		if l.Matches(service, datacenter, pooled) {
			return l.Who
		}
	}
	return ""
}

// pruneLocked forgets lines too old to attribute anything any more. Lines
// are kept for twice the window: a drift may be acted on up to a debounce
// after the change, and may look back a whole window from the change.
func (a *Attributor) pruneLocked(now time.Time) {
	cut := 0
	for cut < len(a.lines) && now.Sub(a.lines[cut].At) > 2*a.window+time.Hour {
		cut++
	}
	a.lines = slices.Delete(a.lines, 0, cut)
}
