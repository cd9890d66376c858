package calendar

import (
	"strings"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// markupScanner reads the Deployments page in one pass over the tokens of
// golang.org/x/net/html's Tokenizer (as split by markupTokens), without
// building a tree (html.Parse of a year of the page cost ~70 ms and 15 MB;
// this pass ~13 ms and 0.8 MB, BenchmarkParseDeploymentsHTMLYear).
//
// It keeps the stack of open elements and, for each open card (an element
// with class deploycal-item), the text collectors its selectors need: one
// per .deploycal-item-window element and one per .ircnick element inside
// .deploycal-item-deployer or .deploycal-item-changes. Text goes to the
// collectors of the innermost open card only (a card nested in another one
// keeps its content to itself), and not through <style>, <script> or
// <template>. An end tag closes the innermost open element of that name and
// every element opened after it, and is ignored when none is open; this is
// the HTML5 tree for well-formed markup (which the rendered page is), and
// the differential tests compare it with html.Parse's tree on the fixtures
// and on generated pages.
//
// Tag names and attributes are read from the token's raw bytes, a
// substring of the page.
type markupScanner struct {
	z *markupTokens
	b pageBuilder

	stack []openElement
	// cards are the open cards, innermost last; pool keeps their buffers
	// for reuse by the next card at the same depth.
	cards []*cardState
	pool  []*cardState
	// hidden counts the open <style>, <script> and <template> elements.
	hidden int
	// leadingLF: the previous token opened <pre>, <listing> or <textarea>,
	// whose first newline is not part of the text.
	leadingLF bool
	tag       startTag
	// scratch buffers for names and nicks
	name, clean []byte
}

// openElement is an entry of the stack of open elements.
type openElement struct {
	atom atom.Atom
	name string // only for names the atom table does not know
	role elementRole
}

type elementRole uint8

const (
	roleCard elementRole = 1 << iota
	roleWindow
	roleDeployers
	roleChanges
	roleNick
	roleHidden // style, script, template: no text of theirs is read
)

// cardState is an open card: its attributes and text collectors. Its
// buffers are reused by the next card at the same depth.
type cardState struct {
	slot  int // in pageBuilder.windows
	id    []byte
	start []byte
	end   []byte

	hasStart, hasEnd bool
	// openDeployers and openChanges count the open .deploycal-item-deployer
	// and .deploycal-item-changes elements of this card.
	openDeployers, openChanges int

	windows     []textCollector // one per window element, in document order
	openWindows []int
	nicks       []nickCollector // one per nick element, in document order
	openNicks   []int
}

// textCollector gathers the text of one element (XPath string(), with
// block boundaries and <br> as spaces). hidden is the scanner's hidden
// count outside the element: text under a hidden element opened later is
// not part of it.
type textCollector struct {
	text   []byte
	hidden int
}

// nickCollector gathers an .ircnick element's own text (its text children)
// and all of its text; see nickText.
type nickCollector struct {
	own, all []byte
	hidden   int
	depth    int // of the nick's element in the stack
	deployer bool
	owner    bool
}

func (s *markupScanner) run() {
	for {
		kind := s.z.next()
		leadingLF := s.leadingLF
		s.leadingLF = false
		switch kind {
		case tokenEnd:
			// Close what is still open, as html.Parse does.
			s.popTo(0)
			return
		case tokenText:
			if len(s.cards) > 0 {
				s.text(leadingLF)
			}
		case tokenStartTag:
			s.startTag()
		case tokenEndTag:
			s.endTag()
		}
	}
}

func (s *markupScanner) card() *cardState { return s.cards[len(s.cards)-1] }

// text hands a text token to the innermost card's open collectors.
func (s *markupScanner) text(leadingLF bool) {
	c := s.card()
	if len(c.openWindows) == 0 && len(c.openNicks) == 0 {
		return
	}
	t := s.z.text()
	if leadingLF && len(t) > 0 && t[0] == '\n' {
		t = t[1:]
	}
	for _, i := range c.openWindows {
		if w := &c.windows[i]; w.hidden == s.hidden {
			w.text = append(w.text, t...)
		}
	}
	top := len(s.stack) - 1
	for _, i := range c.openNicks {
		n := &c.nicks[i]
		if n.hidden == s.hidden {
			n.all = append(n.all, t...)
		}
		if n.depth == top {
			n.own = append(n.own, t...)
		}
	}
}

// space marks a word boundary in the innermost card's open collectors.
func (s *markupScanner) space() {
	if len(s.cards) == 0 {
		return
	}
	c := s.card()
	for _, i := range c.openWindows {
		if w := &c.windows[i]; w.hidden == s.hidden {
			w.text = append(w.text, ' ')
		}
	}
	for _, i := range c.openNicks {
		if n := &c.nicks[i]; n.hidden == s.hidden {
			n.all = append(n.all, ' ')
		}
	}
}

func (s *markupScanner) startTag() {
	raw := s.z.raw
	t := &s.tag
	t.scan(raw)
	if t.slow {
		t.readAttrs(raw)
	}
	a, name := tagAtom(t.name)
	switch a {
	case atom.Pre, atom.Listing, atom.Textarea:
		s.leadingLF = true
	}
	e := openElement{atom: a, name: name}

	var classes markupClasses
	if t.hasClass {
		classes = classesOf(t.class)
	}
	if classes&hasItem != 0 {
		s.openCard(t)
		e.role = roleCard
	} else if len(s.cards) > 0 && classes != 0 {
		c := s.card()
		if classes&hasNick != 0 && (c.openDeployers > 0 || c.openChanges > 0) {
			e.role |= roleNick
			c.nicks = grow(c.nicks)
			n := &c.nicks[len(c.nicks)-1]
			n.own, n.all = n.own[:0], n.all[:0]
			n.hidden, n.depth = s.hidden, len(s.stack)
			n.deployer, n.owner = c.openDeployers > 0, c.openChanges > 0
			c.openNicks = append(c.openNicks, len(c.nicks)-1)
		}
		if classes&hasWindow != 0 {
			e.role |= roleWindow
			c.windows = grow(c.windows)
			w := &c.windows[len(c.windows)-1]
			w.text, w.hidden = w.text[:0], s.hidden
			c.openWindows = append(c.openWindows, len(c.windows)-1)
		}
		if classes&hasDeployer != 0 {
			e.role |= roleDeployers
			c.openDeployers++
		}
		if classes&hasChanges != 0 {
			e.role |= roleChanges
			c.openChanges++
		}
	}
	switch a {
	case atom.Style, atom.Script, atom.Template:
		e.role |= roleHidden
		s.hidden++
	}
	s.stack = append(s.stack, e)
	if voidElement(a) {
		// No content and no end tag: closed at once. <br> and every
		// other void element end a word, as a block boundary does.
		s.popTo(len(s.stack) - 1)
	}
}

func (s *markupScanner) endTag() {
	name := endTagName(s.z.raw)
	if n := len(s.stack); n > 0 {
		// Well-formed markup closes the innermost element: no lookup.
		if top := s.stack[n-1]; top.atom != 0 && top.atom != atom.Body && top.atom != atom.Html && equalFoldASCII(name, top.atom.String()) {
			s.popTo(n - 1)
			return
		}
	}
	a, str := tagAtom(name)
	switch a {
	case atom.Body, atom.Html:
		// html.Parse keeps <body> open after </body>: content after it
		// still belongs to the elements open before it.
		return
	}
	for i := len(s.stack) - 1; i >= 0; i-- {
		if e := s.stack[i]; e.atom == a && e.name == str {
			s.popTo(i)
			return
		}
	}
	// html.Parse turns a stray </br> into <br> and a stray </p> into an
	// empty <p>: both end a word.
	if a == atom.Br || a == atom.P {
		s.space()
	}
}

// popTo closes the elements at depth n and above, innermost first.
func (s *markupScanner) popTo(n int) {
	for len(s.stack) > n {
		top := len(s.stack) - 1
		e := s.stack[top]
		s.stack = s.stack[:top]
		if e.role&roleHidden != 0 {
			s.hidden--
		}
		if e.role&roleCard != 0 {
			// A card's text is its own: no word boundary for the card
			// around it.
			s.closeCard()
			continue
		}
		if e.role&roleHidden == 0 && !inlineElement(e.atom) {
			s.space()
		}
		if e.role&(roleWindow|roleNick|roleDeployers|roleChanges) == 0 {
			continue
		}
		c := s.card()
		if e.role&roleWindow != 0 {
			c.openWindows = c.openWindows[:len(c.openWindows)-1]
		}
		if e.role&roleNick != 0 {
			c.openNicks = c.openNicks[:len(c.openNicks)-1]
		}
		if e.role&roleDeployers != 0 {
			c.openDeployers--
		}
		if e.role&roleChanges != 0 {
			c.openChanges--
		}
	}
}

func (s *markupScanner) openCard(t *startTag) {
	d := len(s.cards)
	if d == len(s.pool) {
		s.pool = append(s.pool, &cardState{})
	}
	c := s.pool[d]
	*c = cardState{
		slot: s.b.openCard(),
		id:   append(c.id[:0], t.id...), start: append(c.start[:0], t.start...), end: append(c.end[:0], t.end...),
		hasStart: t.hasStart, hasEnd: t.hasEnd,
		windows: c.windows[:0], openWindows: c.openWindows[:0],
		nicks: c.nicks[:0], openNicks: c.openNicks[:0],
	}
	s.cards = append(s.cards, c)
}

// closeCard turns the innermost open card into its window.
func (s *markupScanner) closeCard() {
	c := s.card()
	s.cards = s.cards[:len(s.cards)-1]
	w, ok := s.b.closeCard(c.slot, c.id, c.start, c.hasStart, c.end, c.hasEnd)
	if !ok {
		return
	}
	if len(c.windows) == 1 {
		w.Name = windowName(&s.clean, c.windows[0].text)
	} else {
		s.name = s.name[:0]
		for i, t := range c.windows {
			if i > 0 {
				s.name = append(s.name, ' ')
			}
			s.name = append(s.name, t.text...)
		}
		w.Name = windowName(&s.clean, s.name)
	}
	for i := range c.nicks {
		n := &c.nicks[i]
		nick := s.nickText(n)
		if n.deployer {
			w.addDeployer(nick)
		}
		if n.owner {
			w.addOwner(nick)
		}
	}
	s.b.setWindow(c.slot, w)
}

// nickText is an .ircnick element's nick: its own text (jouncebot reads
// lxml's .text, the text before the first child element), or, when the
// nick is wrapped in a child element such as <b>, all of its text.
func (s *markupScanner) nickText(n *nickCollector) string {
	if s.clean = appendClean(s.clean[:0], n.own); len(s.clean) == 0 {
		s.clean = appendClean(s.clean, n.all)
	}
	return string(s.clean)
}

// grow extends s by one element, reusing the spare capacity (and the
// buffers of the element there) when there is some.
func grow[T any](s []T) []T {
	if len(s) < cap(s) {
		return s[:len(s)+1]
	}
	var zero T
	return append(s, zero)
}

// startTag is what the scanner reads of a start tag: its name and the four
// attributes the markup defines (substrings of the page, unless decoded).
type startTag struct {
	name  string
	class string
	id    string
	start string
	end   string

	hasClass, hasStart, hasEnd bool
	// slow: an interesting value holds a character reference, CR or NUL,
	// which only the Tokenizer's TagAttr decodes exactly as html.Parse.
	slow bool
}

// Attribute names read by the scanner.
const (
	attrClass    = "class"
	attrID       = "id"
	attrUTCStart = "data-utcstart"
	attrUTCEnd   = "data-utcend"
)

// scan reads a start tag from its raw bytes ("<div class=x ...>"),
// following the Tokenizer's own rules (readTag, readTagAttrKey,
// readTagAttrVal in x/net/html/token.go): the first of repeated attributes
// counts, names are case-insensitive.
func (t *startTag) scan(raw string) {
	*t = startTag{}
	var hasID bool
	i := 1 // after '<'
	n := len(raw)
	for i < n && !isHTMLSpace(raw[i]) && raw[i] != '/' && raw[i] != '>' {
		i++
	}
	t.name = raw[1:i]
	for {
		for i < n && isHTMLSpace(raw[i]) {
			i++
		}
		if i >= n || raw[i] == '>' {
			return
		}
		// Key: up to whitespace, '/', '>' or '=' (a leading '=' is part
		// of the key).
		ks := i
		for i < n {
			c := raw[i]
			if c == '=' && i == ks {
				i++
				continue
			}
			if isHTMLSpace(c) || c == '/' || c == '=' || c == '>' {
				break
			}
			i++
		}
		key := raw[ks:i]
		if i == ks {
			i++ // a '/' (or '>' at the end) that readTagAttrVal consumes
		}
		// Value.
		var val string
		j := i
		for j < n && isHTMLSpace(raw[j]) {
			j++
		}
		if j < n && raw[j] == '=' {
			j++
			for j < n && isHTMLSpace(raw[j]) {
				j++
			}
			switch {
			case j >= n:
			case raw[j] == '>':
			case raw[j] == '"' || raw[j] == '\'':
				q := raw[j]
				vs := j + 1
				ve := strings.IndexByte(raw[vs:], q)
				if ve < 0 {
					val, j = raw[vs:], n
				} else {
					val, j = raw[vs:vs+ve], vs+ve+1
				}
			default:
				vs := j
				for j < n && !isHTMLSpace(raw[j]) && raw[j] != '>' {
					j++
				}
				val = raw[vs:j]
			}
			i = j
		} else if j < n && raw[j] == '/' && i < j {
			i = j + 1
		}
		if len(key) == 0 {
			continue
		}
		switch {
		case !t.hasClass && equalFoldASCII(key, attrClass):
			t.class, t.hasClass = val, true
		case !hasID && equalFoldASCII(key, attrID):
			t.id, hasID = val, true
		case !t.hasStart && equalFoldASCII(key, attrUTCStart):
			t.start, t.hasStart = val, true
		case !t.hasEnd && equalFoldASCII(key, attrUTCEnd):
			t.end, t.hasEnd = val, true
		default:
			continue
		}
		for i := 0; i < len(val); i++ {
			if c := val[i]; c == '&' || c == '\r' || c == 0 {
				t.slow = true
				break
			}
		}
	}
}

// readAttrs reads the attributes of the tag raw again through x/net/html's
// Tokenizer, for the rare tag whose values need its decoding (alone, the
// tag is the same token as on the page).
func (t *startTag) readAttrs(raw string) {
	z := html.NewTokenizer(strings.NewReader(raw))
	z.Next()
	var hasClass, hasID, hasStart, hasEnd bool
	for more := true; more; {
		var k, v []byte
		k, v, more = z.TagAttr()
		switch {
		case !hasClass && string(k) == attrClass:
			t.class, hasClass = string(v), true
		case !hasID && string(k) == attrID:
			t.id, hasID = string(v), true
		case !hasStart && string(k) == attrUTCStart:
			t.start, hasStart = string(v), true
		case !hasEnd && string(k) == attrUTCEnd:
			t.end, hasEnd = string(v), true
		}
	}
}

// markupClasses is the set of the markup's classes an element has.
type markupClasses uint8

const (
	hasItem markupClasses = 1 << iota
	hasWindow
	hasDeployer
	hasChanges
	hasNick
)

// classesOf reads a class attribute's value in one pass. HTML splits class
// lists on ASCII whitespace.
func classesOf(v string) markupClasses {
	var m markupClasses
	for len(v) > 0 {
		i := 0
		for i < len(v) && isHTMLSpace(v[i]) {
			i++
		}
		v = v[i:]
		end := 0
		for end < len(v) && !isHTMLSpace(v[end]) {
			end++
		}
		switch v[:end] {
		case classItem:
			m |= hasItem
		case classWindow:
			m |= hasWindow
		case classDeployer:
			m |= hasDeployer
		case classChanges:
			m |= hasChanges
		case classNick:
			m |= hasNick
		}
		v = v[end:]
	}
	return m
}

// endTagName returns the name in an end tag's raw bytes ("</div >").
func endTagName(raw string) string {
	if len(raw) < 2 {
		return ""
	}
	raw = raw[2:]
	i := 0
	for i < len(raw) && !isHTMLSpace(raw[i]) && raw[i] != '/' && raw[i] != '>' {
		i++
	}
	return raw[:i]
}

// equalFoldASCII reports whether b is s (lower-case) in any ASCII case.
func equalFoldASCII(b, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// tagAtom returns the atom of a tag name, or 0 and the lower-cased name
// when the atom table does not know it.
func tagAtom(name string) (atom.Atom, string) {
	var buf [16]byte
	if len(name) <= len(buf) {
		lower := buf[:len(name)]
		for i := 0; i < len(name); i++ {
			c := name[i]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			lower[i] = c
		}
		if a := atom.Lookup(lower); a != 0 {
			return a, ""
		}
	}
	return 0, strings.ToLower(strings.ReplaceAll(name, "\x00", "\ufffd"))
}

// voidElement: elements without content or end tag.
func voidElement(a atom.Atom) bool {
	switch a {
	case atom.Area, atom.Base, atom.Br, atom.Col, atom.Embed, atom.Hr, atom.Img, atom.Input,
		atom.Keygen, atom.Link, atom.Meta, atom.Param, atom.Source, atom.Track, atom.Wbr:
		return true
	}
	return false
}
