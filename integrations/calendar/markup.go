package calendar

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"

	"poolbot/internal/ircname"
)

// Classes of the deployment calendar's semantic markup (see the package doc).
const (
	classItem     = "deploycal-item"
	classWindow   = "deploycal-item-window"
	classDeployer = "deploycal-item-deployer"
	classChanges  = "deploycal-item-changes"
	classNick     = "ircnick"

	// placeholderNick is what the event card template shows in "what" until
	// someone adds a patch ({{ircnick|irc-nickname|Requesting Developer}}).
	placeholderNick = "irc-nickname"
	// backportDisclaimer is the bold note in every backport window's title.
	backportDisclaimer = "Your patch may or may not be deployed at the sole discretion of the deployer"
)

// ErrNoWindows is returned (wrapped) when a page has no deploycal-item at
// all. An empty week cannot be told apart from a page whose markup changed,
// and the real Deployments page always lists the week's recurring backport
// windows, so this is an error rather than an empty schedule.
var ErrNoWindows = errors.New("no deployment windows (no .deploycal-item elements) on the page: markup changed or wrong page")

// Page is the result of parsing the rendered Deployments page.
type Page struct {
	// Windows in document order, with IDs made unique.
	Windows []Window
	// Skipped describes each item that was left out, and why.
	Skipped []string
}

// ParseDeploymentsHTML extracts the deployment windows from the rendered HTML
// of the Deployments page. pageURL (the page's fullurl) is used to build each
// window's URL as pageURL#id; it may be empty.
//
// Items without an id get "deploycal-item-<UTC start as 20060102T1504>", the
// form the real ids use, and a URL without fragment. Repeated ids are made
// unique with "-2", "-3"... (the URL keeps the page's anchor). An item whose
// start or end is missing, unparseable, or whose end is before its start is
// skipped and listed in Page.Skipped. The result is an error when the page
// has no item at all (ErrNoWindows) or when every item was skipped.
func ParseDeploymentsHTML(page, pageURL string) (Page, error) {
	doc, err := html.Parse(strings.NewReader(page))
	if err != nil {
		return Page{}, fmt.Errorf("parse html: %w", err)
	}
	items := selectAll(doc, classItem)
	if len(items) == 0 {
		return Page{}, ErrNoWindows
	}
	var p Page
	seen := make(map[string]int, len(items))
	for i, item := range items {
		w, err := parseItem(item, pageURL)
		if err != nil {
			label := attr(item, "id")
			if label == "" {
				label = fmt.Sprintf("#%d", i+1)
			}
			p.Skipped = append(p.Skipped, fmt.Sprintf("deployment window %s skipped: %v", label, err))
			continue
		}
		seen[w.ID]++
		if n := seen[w.ID]; n > 1 {
			w.ID = fmt.Sprintf("%s-%d", w.ID, n)
		}
		p.Windows = append(p.Windows, w)
	}
	if len(p.Windows) == 0 {
		return p, fmt.Errorf("none of the %d deployment windows on the page could be read (first: %s)", len(items), p.Skipped[0])
	}
	return p, nil
}

func parseItem(item *html.Node, pageURL string) (Window, error) {
	var w Window
	startAttr, ok := lookupAttr(item, "data-utcstart")
	if !ok {
		return w, errors.New("no data-utcstart")
	}
	endAttr, ok := lookupAttr(item, "data-utcend")
	if !ok {
		return w, errors.New("no data-utcend")
	}
	var err error
	if w.Start, err = parseUTCAttr(startAttr); err != nil {
		return w, fmt.Errorf("data-utcstart: %w", err)
	}
	if w.End, err = parseUTCAttr(endAttr); err != nil {
		return w, fmt.Errorf("data-utcend: %w", err)
	}
	if w.End.Before(w.Start) {
		return w, fmt.Errorf("ends (%s) before it starts (%s)", w.End.Format(time.RFC3339), w.Start.Format(time.RFC3339))
	}

	w.ID = cleanText(attr(item, "id"))
	switch {
	case w.ID == "":
		w.ID = "deploycal-item-" + w.Start.Format("20060102T1504")
		w.URL = pageURL
	case pageURL != "":
		w.URL = pageURL + "#" + w.ID
	}

	var name strings.Builder
	for _, n := range selectAll(item, classWindow) {
		if name.Len() > 0 {
			name.WriteByte(' ')
		}
		appendText(&name, n)
	}
	w.Name = windowName(name.String())

	for _, n := range selectAll(item, classDeployer, classNick) {
		if nick := nickText(n); validNick(nick) {
			w.Deployers = appendUnique(w.Deployers, nick)
		}
	}
	for _, n := range selectAll(item, classChanges, classNick) {
		if nick := nickText(n); validNick(nick) && !strings.EqualFold(nick, placeholderNick) {
			w.Owners = appendUnique(w.Owners, nick)
		}
	}
	return w, nil
}

// windowName cleans a window title: the disclaimer and the "(Max N patches)"
// note are removed and whitespace is collapsed.
func windowName(s string) string {
	s = cleanText(s)
	s = strings.ReplaceAll(s, backportDisclaimer, " ")
	s = removeMaxPatches(s)
	return cleanText(s)
}

// removeMaxPatches removes every "(Max N patches)" (or "patch"), the note
// jouncebot strips with the regexp `\(Max \d+ patches\)`.
func removeMaxPatches(s string) string {
	const prefix = "(Max "
	var b strings.Builder
	for {
		i := strings.Index(s, prefix)
		if i < 0 {
			break
		}
		rest := s[i+len(prefix):]
		digits := len(rest) - len(strings.TrimLeft(rest, "0123456789"))
		tail := rest[digits:]
		var suffix string
		switch {
		case digits > 0 && strings.HasPrefix(tail, " patches)"):
			suffix = " patches)"
		case digits > 0 && strings.HasPrefix(tail, " patch)"):
			suffix = " patch)"
		}
		if suffix == "" {
			b.WriteString(s[:i+len(prefix)])
			s = rest
			continue
		}
		b.WriteString(s[:i])
		b.WriteByte(' ')
		s = tail[len(suffix):]
	}
	b.WriteString(s)
	return b.String()
}

// validNick is poolbot's one nick rule (ircname.ValidNick). Anything else
// in an .ircnick element is not a nick the bot could address, and is
// dropped.
func validNick(s string) bool { return ircname.ValidNick(s) }

// nickText returns an .ircnick element's nick: its own text (jouncebot reads
// lxml's .text, the text before the first child element), or, when the nick
// is wrapped in a child element such as <b>, all of its text.
func nickText(n *html.Node) string {
	var b strings.Builder
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		if c.Type == html.TextNode {
			b.WriteString(c.Data)
		}
	}
	if s := cleanText(b.String()); s != "" {
		return s
	}
	b.Reset()
	appendText(&b, n)
	return cleanText(b.String())
}

// appendText appends the text content of n (XPath string()), skipping
// <style> and <script> (MediaWiki's TemplateStyles puts a <style> element
// inside the first use of a template) and turning <br> and block boundaries
// into spaces so words do not run together.
func appendText(b *strings.Builder, n *html.Node) {
	switch n.Type {
	case html.TextNode:
		b.WriteString(n.Data)
		return
	case html.ElementNode:
		if hasClass(n, classItem) {
			return // a nested item's text is its own
		}
		switch n.DataAtom {
		case atom.Style, atom.Script, atom.Template:
			return
		case atom.Br:
			b.WriteByte(' ')
			return
		}
	case html.CommentNode:
		return
	}
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		appendText(b, c)
	}
	if n.Type == html.ElementNode && !inlineElement(n.DataAtom) {
		b.WriteByte(' ')
	}
}

func inlineElement(a atom.Atom) bool {
	switch a {
	case atom.A, atom.Abbr, atom.B, atom.Bdi, atom.Bdo, atom.Cite, atom.Code, atom.Data,
		atom.Dfn, atom.Em, atom.I, atom.Kbd, atom.Mark, atom.Q, atom.S, atom.Samp,
		atom.Small, atom.Span, atom.Strong, atom.Sub, atom.Sup, atom.Time, atom.U, atom.Var:
		return true
	}
	return false
}

// selectAll returns the elements under root (root excluded) matching the
// selector ".c0 .c1 ... .cn" (class names joined by descendant combinators),
// in document order. Matching is greedy, which is exact for a chain of
// descendant combinators. Each node is visited once, so nothing is returned
// twice. When root is itself an item, the search does not enter an item
// nested in it (broken markup): the nested item is found on its own and its
// name and nicks belong to it alone.
func selectAll(root *html.Node, classes ...string) []*html.Node {
	var out []*html.Node
	inItem := hasClass(root, classItem)
	var walk func(n *html.Node, i int)
	walk = func(n *html.Node, i int) {
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			if c.Type != html.ElementNode {
				continue
			}
			if inItem && hasClass(c, classItem) {
				// Inside an item, a nested item belongs to itself.
				continue
			}
			next := i
			if hasClass(c, classes[i]) {
				if i == len(classes)-1 {
					out = append(out, c)
				} else {
					next = i + 1
				}
			}
			walk(c, next)
		}
	}
	walk(root, 0)
	return out
}

// hasClass reports whether n's class attribute contains the token class.
// HTML splits class lists on ASCII whitespace.
func hasClass(n *html.Node, class string) bool {
	for _, a := range n.Attr {
		if a.Namespace != "" || a.Key != "class" {
			continue
		}
		v := a.Val
		for len(v) > 0 {
			v = strings.TrimLeft(v, " \t\n\f\r")
			end := strings.IndexAny(v, " \t\n\f\r")
			if end < 0 {
				end = len(v)
			}
			if v[:end] == class {
				return true
			}
			v = v[end:]
		}
		return false
	}
	return false
}

func lookupAttr(n *html.Node, key string) (string, bool) {
	for _, a := range n.Attr {
		if a.Namespace == "" && a.Key == key {
			return a.Val, true
		}
	}
	return "", false
}

func attr(n *html.Node, key string) string {
	v, _ := lookupAttr(n, key)
	return v
}
