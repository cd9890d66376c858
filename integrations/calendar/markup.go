package calendar

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
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
//
// The page is read in one pass over the HTML tokens (see markupScanner),
// without building a tree.
func ParseDeploymentsHTML(page, pageURL string) (Page, error) {
	s := markupScanner{z: html.NewTokenizer(strings.NewReader(page))}
	s.b.pageURL = pageURL
	// Every card has one data-utcstart: a good guess of the number of
	// windows, bounded so that a page of nothing else cannot claim much.
	s.b.windows = make([]Window, 0, min(strings.Count(page, attrUTCStart), len(page)/128))
	s.run()
	return s.b.page()
}

// pageBuilder collects the cards in document order. A card is opened when
// its element starts and closed when it ends, so a card nested in another
// one (broken markup) closes first; its slot keeps the document order.
type pageBuilder struct {
	pageURL string
	windows []Window // one slot per card; ID "" marks a skipped card
	skipped []skippedCard
}

type skippedCard struct {
	ordinal int // 1-based position of the card on the page
	reason  string
}

// openCard reserves the next card's slot and returns its index.
func (b *pageBuilder) openCard() int {
	b.windows = append(b.windows, Window{})
	return len(b.windows) - 1
}

// closeCard fills the slot i with the card's window.
func (b *pageBuilder) closeCard(i int, w Window) {
	b.windows[i] = w
}

// skipCard records why the card in slot i was left out. id is the card's
// id attribute, for the message.
func (b *pageBuilder) skipCard(i int, id string, err error) {
	label := id
	if label == "" {
		label = fmt.Sprintf("#%d", i+1)
	}
	b.skipped = append(b.skipped, skippedCard{ordinal: i + 1,
		reason: fmt.Sprintf("deployment window %s skipped: %v", label, err)})
}

// page returns the windows of the readable cards in document order, with
// repeated IDs made unique.
func (b *pageBuilder) page() (Page, error) {
	cards := len(b.windows)
	if cards == 0 {
		return Page{}, ErrNoWindows
	}
	var p Page
	if len(b.skipped) > 0 {
		slices.SortFunc(b.skipped, func(x, y skippedCard) int { return x.ordinal - y.ordinal })
		for _, s := range b.skipped {
			p.Skipped = append(p.Skipped, s.reason)
		}
		b.windows = slices.DeleteFunc(b.windows, func(w Window) bool { return w.ID == "" })
	}
	if len(b.windows) == 0 {
		return p, fmt.Errorf("none of the %d deployment windows on the page could be read (first: %s)", cards, p.Skipped[0])
	}
	seen := make(map[string]int, len(b.windows))
	for i := range b.windows {
		w := &b.windows[i]
		seen[w.ID]++
		if n := seen[w.ID]; n > 1 {
			w.ID = fmt.Sprintf("%s-%d", w.ID, n)
		}
	}
	p.Windows = b.windows
	return p, nil
}

// cardWindow reads a card's id and its data-utcstart/data-utcend
// attributes (has* says whether each attribute is present) into a Window
// with ID, URL, Start and End set.
func cardWindow(id, startAttr []byte, hasStart bool, endAttr []byte, hasEnd bool, pageURL string) (Window, error) {
	var w Window
	if !hasStart {
		return w, errors.New("no data-utcstart")
	}
	if !hasEnd {
		return w, errors.New("no data-utcend")
	}
	var err error
	if w.Start, err = parseUTCAttr(string(startAttr)); err != nil {
		return w, fmt.Errorf("data-utcstart: %w", err)
	}
	if w.End, err = parseUTCAttr(string(endAttr)); err != nil {
		return w, fmt.Errorf("data-utcend: %w", err)
	}
	if w.End.Before(w.Start) {
		return w, fmt.Errorf("ends (%s) before it starts (%s)", w.End.Format(time.RFC3339), w.Start.Format(time.RFC3339))
	}

	w.ID = cleanBytes(id)
	switch {
	case w.ID == "":
		w.ID = "deploycal-item-" + w.Start.Format("20060102T1504")
		w.URL = pageURL
	case pageURL != "":
		w.URL = pageURL + "#" + w.ID
	}
	return w, nil
}

// addDeployer adds the text of a .deploycal-item-deployer .ircnick element
// to the deployers, if it is a nick and not there yet.
func (w *Window) addDeployer(nick string) {
	if validNick(nick) {
		w.Deployers = appendUnique(w.Deployers, nick)
	}
}

// addOwner adds the text of a .deploycal-item-changes .ircnick element to
// the patch owners, unless it is not a nick, already there, or the
// template's placeholder.
func (w *Window) addOwner(nick string) {
	if validNick(nick) && !strings.EqualFold(nick, placeholderNick) {
		w.Owners = appendUnique(w.Owners, nick)
	}
}

// windowName cleans a window title: the disclaimer and the "(Max N patches)"
// note are removed and whitespace is collapsed. scratch is a buffer the
// caller may reuse from one call to the next.
func windowName(scratch *[]byte, s []byte) string {
	b := appendClean((*scratch)[:0], s)
	b = removeDisclaimer(b)
	b = removeMaxPatches(b)
	b = appendClean(b[:0], b)
	*scratch = b
	return string(b)
}

// removeDisclaimer replaces every backport disclaimer in s with a space, in
// place.
func removeDisclaimer(s []byte) []byte {
	out := s[:0]
	for {
		i := bytes.Index(s, []byte(backportDisclaimer))
		if i < 0 {
			return append(out, s...)
		}
		out = append(append(out, s[:i]...), ' ')
		s = s[i+len(backportDisclaimer):]
	}
}

// removeMaxPatches replaces every "(Max N patches)" (or "patch"), the note
// jouncebot strips with the regexp `\(Max \d+ patches\)`, with a space, in
// place. (Writing never overtakes reading: what is written is never longer
// than what was read.)
func removeMaxPatches(s []byte) []byte {
	const prefix = "(Max "
	out := s[:0]
	for {
		i := bytes.Index(s, []byte(prefix))
		if i < 0 {
			break
		}
		rest := s[i+len(prefix):]
		digits := 0
		for digits < len(rest) && '0' <= rest[digits] && rest[digits] <= '9' {
			digits++
		}
		tail := rest[digits:]
		var suffix string
		switch {
		case digits > 0 && bytes.HasPrefix(tail, []byte(" patches)")):
			suffix = " patches)"
		case digits > 0 && bytes.HasPrefix(tail, []byte(" patch)")):
			suffix = " patch)"
		}
		if suffix == "" {
			out = append(out, s[:i+len(prefix)]...)
			s = rest
			continue
		}
		out = append(append(out, s[:i]...), ' ')
		s = tail[len(suffix):]
	}
	return append(out, s...)
}

// validNick reports whether s can be an IRC nick (RFC 2812 letters, digits
// and specials, at most 64 bytes). Anything else in an .ircnick element is
// not a nick the bot could address, and is dropped.
func validNick(s string) bool {
	if s == "" || len(s) > 64 || (s[0] >= '0' && s[0] <= '9') || s[0] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("[]\\`_^{|}-", c) >= 0:
		default:
			return false
		}
	}
	return true
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

// isHTMLSpace: the ASCII whitespace of HTML (space, tab, LF, FF, CR).
func isHTMLSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\f' || c == '\r'
}
