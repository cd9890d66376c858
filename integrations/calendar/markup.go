package calendar

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

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

// ErrUnreadableCard is wrapped by the error for a page with a card whose
// start time cannot be read: such a card cannot be placed anywhere, so the
// whole calendar counts as unreadable (and Cached closes the gate at once,
// without falling back to the last good schedule).
var ErrUnreadableCard = errors.New("unreadable calendar card")

// Page is the result of parsing the rendered Deployments page.
type Page struct {
	// Windows in document order, with IDs made unique.
	Windows []Window
}

// ParseDeploymentsHTML extracts the deployment windows from the rendered HTML
// of the Deployments page. pageURL (the page's fullurl) is used to build each
// window's URL as pageURL#id; it may be empty.
//
// Items without an id get "deploycal-item-<UTC start as 20060102T1504>", the
// form the real ids use, and a URL without fragment. Repeated ids are made
// unique with "-2", "-3"... (the URL keeps the page's anchor).
//
// A card that cannot be read completely still blocks what it can: a card
// whose end is missing, unparseable, or before its start becomes a window of
// unreadableLength from its start (0: DefaultUnreadableWindowLength), with
// Window.Unreadable saying why. A card whose start is missing or unparseable
// makes the page an error wrapping ErrUnreadableCard. A page without any card
// is an error too (ErrNoWindows).
//
// The page is read in one pass over the HTML tokens (see markupScanner),
// without building a tree.
func ParseDeploymentsHTML(page, pageURL string, unreadableLength time.Duration) (Page, error) {
	if unreadableLength <= 0 {
		unreadableLength = DefaultUnreadableWindowLength
	}
	s := markupScanner{z: newMarkupTokens(page)}
	s.b.pageURL, s.b.unreadableLength = pageURL, unreadableLength
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
	pageURL          string
	unreadableLength time.Duration
	windows          []Window // one slot per card
	startless        []startlessCard
}

// startlessCard is a card without a readable start.
type startlessCard struct {
	ordinal int // 1-based position of the card on the page
	label   string
	reason  string
}

// openCard reserves the next card's slot and returns its index.
func (b *pageBuilder) openCard() int {
	b.windows = append(b.windows, Window{})
	return len(b.windows) - 1
}

// closeCard reads the card in slot i from its id and time attributes (has*
// says whether each is present) and returns its window, with ID, URL,
// Start, End and Unreadable set. ok is false when the card has no readable
// start: it is recorded, and the page will be an error.
func (b *pageBuilder) closeCard(i int, id, startAttr []byte, hasStart bool, endAttr []byte, hasEnd bool) (w Window, ok bool) {
	var err error
	switch {
	case !hasStart:
		err = errors.New("no start time")
	default:
		if w.Start, err = parseUTCAttr(string(startAttr)); err != nil {
			err = fmt.Errorf("unreadable start time %q", attrSnippet(startAttr))
		}
	}
	if err != nil {
		label := cleanBytes(id)
		if label == "" {
			label = fmt.Sprintf("#%d", i+1)
		}
		b.startless = append(b.startless, startlessCard{ordinal: i + 1, label: label, reason: err.Error()})
		return Window{}, false
	}

	switch {
	case !hasEnd:
		w.Unreadable = "no end time"
	default:
		if w.End, err = parseUTCAttr(string(endAttr)); err != nil {
			w.Unreadable = fmt.Sprintf("unreadable end time %q", attrSnippet(endAttr))
		} else if w.End.Before(w.Start) {
			w.Unreadable = "end " + w.End.Format("2006-01-02 15:04") + " UTC before start"
		}
	}
	if w.Unreadable != "" {
		w.End = w.Start.Add(b.unreadableLength)
	}

	w.ID = cleanBytes(id)
	switch {
	case w.ID == "":
		w.ID = "deploycal-item-" + w.Start.Format("20060102T1504")
		w.URL = b.pageURL
	case b.pageURL != "":
		w.URL = b.pageURL + "#" + w.ID
	}
	return w, true
}

// attrSnippet is an attribute value for a message: cleaned, and cut after
// 40 characters.
func attrSnippet(v []byte) string {
	s := cleanBytes(v)
	if r := []rune(s); len(r) > 40 {
		s = string(r[:40]) + "…"
	}
	return s
}

// setWindow fills slot i.
func (b *pageBuilder) setWindow(i int, w Window) {
	b.windows[i] = w
}

// page returns the windows in document order, with repeated IDs made
// unique.
func (b *pageBuilder) page() (Page, error) {
	if len(b.windows) == 0 {
		return Page{}, ErrNoWindows
	}
	if len(b.startless) > 0 {
		slices.SortFunc(b.startless, func(x, y startlessCard) int { return x.ordinal - y.ordinal })
		first := b.startless[0]
		more := ""
		if n := len(b.startless) - 1; n > 0 {
			more = fmt.Sprintf(" (and %d more like it)", n)
		}
		return Page{}, fmt.Errorf("%w %s (%s)%s: the calendar cannot be read", ErrUnreadableCard, first.label, first.reason, more)
	}
	seen := make(map[string]int, len(b.windows))
	for i := range b.windows {
		w := &b.windows[i]
		seen[w.ID]++
		if n := seen[w.ID]; n > 1 {
			w.ID = fmt.Sprintf("%s-%d", w.ID, n)
		}
	}
	return Page{Windows: b.windows}, nil
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
	if cut := removeMaxPatches(removeDisclaimer(b)); len(cut) != len(b) {
		// Something was removed: collapse the spaces left behind.
		b = appendClean(cut[:0], cut)
	}
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

// validNick is poolbot's one nick rule (ircname.ValidNick). Anything else
// in an .ircnick element is not a nick the bot could address, and is
// dropped.
func validNick(s string) bool { return ircname.ValidNick(s) }

// inlineElement: elements whose end is not a word boundary in a window's
// or nick's text (appendText in the oracle: every other element's end is).
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
