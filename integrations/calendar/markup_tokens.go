package calendar

import (
	"bytes"
	"strings"

	"golang.org/x/net/html"
)

// The reads below follow golang.org/x/net/html's token.go, Copyright 2010
// The Go Authors, under the BSD-style license in that module's LICENSE.

// markupTokens splits a page into the tokens of golang.org/x/net/html's
// Tokenizer (v0.62.0, token.go), at the same places and with the same text,
// but over the page in memory and without copying: tokens and text are
// substrings of the page. The Tokenizer reads through a buffer and, for
// every attribute of every tag, clones and lower-cases its name to drop
// repeated ones; on a year of the Deployments page that was over half of
// the parse (~14 ms and 69k allocations of ~26 ms and 85k). The scanner
// reads the few attributes it needs from the tag's raw bytes itself
// (startTag.scan), so the tokenizer only has to find where each token ends.
//
// Each read follows the Tokenizer's function of the same name (readTag,
// readTagAttrKey, readTagAttrVal, readComment, readRawOrRCDATA,
// readScript, ...), so that the two can be compared line by line.
// FuzzMarkupTokens checks that both give the same tokens, raw bytes and
// text on any input.
//
// Start and self-closing tags are one kind (the scanner treats them alike,
// and the Tokenizer's rule depends on which repeated attributes it kept),
// as are comments, doctypes and other markup declarations (the scanner
// skips them).
type markupTokens struct {
	in  string
	pos int // where the next token starts

	// raw is the current token, in[start:pos].
	raw string
	// rawTag is the lower-cased name of the element whose raw text or
	// RCDATA (<script>, <style>, <textarea>, <title>...) comes next.
	rawTag string
	// textIsRaw: the current text token's character references are not
	// decoded (raw text); convertNUL: its NULs become U+FFFD.
	textIsRaw, convertNUL bool
}

// tokenKind is what the scanner distinguishes of a token.
type tokenKind uint8

const (
	// tokenEnd: the end of the page, or a tag the page ends in the middle
	// of (the Tokenizer's ErrorToken).
	tokenEnd tokenKind = iota
	tokenText
	tokenStartTag // also a self-closing one (<br/>)
	tokenEndTag
	// tokenOther: a comment, doctype, bogus comment (<?x>, <!x>, </ x>)
	// or "</>".
	tokenOther
)

func newMarkupTokens(page string) *markupTokens { return &markupTokens{in: page} }

// next reads the next token (Tokenizer.Next).
func (z *markupTokens) next() tokenKind {
	in, start := z.in, z.pos
	if start >= len(in) {
		z.raw = ""
		return tokenEnd
	}
	if z.rawTag != "" {
		var end int
		switch z.rawTag {
		case "plaintext":
			end, z.textIsRaw = len(in), true
		case "script":
			end, z.textIsRaw = scriptEnd(in, start), true
		default:
			end = rawTextEnd(in, start, z.rawTag)
			// A textarea's or title's RCDATA can contain escaped entities.
			z.textIsRaw = z.rawTag != "textarea" && z.rawTag != "title"
		}
		z.rawTag = ""
		if end > start {
			z.convertNUL = true
			return z.token(tokenText, end)
		}
	}
	z.textIsRaw, z.convertNUL = false, false

	p := start
	for {
		i := strings.IndexByte(in[p:], '<')
		if i < 0 {
			break
		}
		p += i + 1
		// Is the '<' part of a tag, comment or doctype? If not, it is
		// part of the text.
		if p >= len(in) {
			break
		}
		c := in[p]
		var kind tokenKind
		switch {
		case isASCIILetter(c):
			kind = tokenStartTag
		case c == '/':
			kind = tokenEndTag
		case c == '!' || c == '?':
			kind = tokenOther
		default:
			continue // reconsume c
		}
		p++
		// The text before the tag is a token of its own, first.
		if x := p - len("<a"); start < x {
			return z.token(tokenText, x)
		}
		switch kind {
		case tokenStartTag:
			nameEnd, end, ok := readTag(in, p)
			if !ok {
				return z.cutOff()
			}
			z.rawTag = rawTextElement(in[p-1 : nameEnd])
			return z.token(tokenStartTag, end)
		case tokenEndTag:
			if p >= len(in) {
				// "</" at the end of the page is text.
				return z.token(tokenText, len(in))
			}
			c = in[p]
			switch {
			case c == '>':
				// "</>" is no tag at all.
				return z.token(tokenOther, p+1)
			case isASCIILetter(c):
				_, end, ok := readTag(in, p+1)
				if !ok {
					return z.cutOff()
				}
				return z.token(tokenEndTag, end)
			}
			return z.token(tokenOther, untilCloseAngle(in, p))
		default:
			if c == '!' {
				return z.token(tokenOther, readMarkupDeclaration(in, p))
			}
			return z.token(tokenOther, untilCloseAngle(in, p-1))
		}
	}
	return z.token(tokenText, len(in))
}

// token makes in[pos:end] the current token.
func (z *markupTokens) token(kind tokenKind, end int) tokenKind {
	z.raw = z.in[z.pos:end]
	z.pos = end
	return kind
}

// cutOff ends the tokens at a tag the page ends in the middle of: the
// Tokenizer returns ErrorToken there, and nothing after it.
func (z *markupTokens) cutOff() tokenKind {
	z.raw, z.pos = "", len(z.in)
	return tokenEnd
}

// text is the current text token's text (Tokenizer.Text): CR LF and CR
// become LF, NUL becomes U+FFFD in raw text, and character references are
// decoded except in raw text. The page's text rarely needs any of it, and
// is then returned as it is.
func (z *markupTokens) text() string {
	s := z.raw
	decode := !z.textIsRaw && strings.IndexByte(s, '&') >= 0
	nul := z.convertNUL && strings.IndexByte(s, 0) >= 0
	if !decode && !nul && strings.IndexByte(s, '\r') < 0 {
		return s
	}
	b := convertNewlines([]byte(s))
	if nul {
		b = bytes.ReplaceAll(b, []byte{0}, []byte("\ufffd"))
	}
	if decode {
		return html.UnescapeString(string(b))
	}
	return string(b)
}

// convertNewlines converts "\r" and "\r\n" in s to "\n", in place.
func convertNewlines(s []byte) []byte {
	out := s[:0]
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\r' {
			c = '\n'
			if i+1 < len(s) && s[i+1] == '\n' {
				i++
			}
		}
		out = append(out, c)
	}
	return out
}

// readTag reads a tag's name and attributes (Tokenizer.readTag), p being
// just after the name's first letter. It returns where the name ends and
// where the tag ends (after its '>'); ok is false when the page ends first.
func readTag(in string, p int) (nameEnd, end int, ok bool) {
	// readTagName: up to whitespace (consumed), '/' or '>'.
	for ; ; p++ {
		if p >= len(in) {
			return 0, 0, false
		}
		if c := in[p]; isHTMLSpace(c) {
			nameEnd = p
			p++
			break
		} else if c == '/' || c == '>' {
			nameEnd = p
			break
		}
	}
	for {
		if p = skipWhiteSpace(in, p); p >= len(in) {
			return 0, 0, false
		}
		if in[p] == '>' {
			return nameEnd, p + 1, true
		}
		if p, ok = readTagAttr(in, p); !ok {
			return 0, 0, false
		}
	}
}

// readTagAttr reads one attribute, key and value (readTagAttrKey and
// readTagAttrVal), from p, which is neither whitespace nor '>'. It returns
// where the attribute ends.
func readTagAttr(in string, p int) (int, bool) {
	// Key: up to whitespace, '/', '>' or '=', where a leading '=' is part
	// of the key.
	for ks := p; ; p++ {
		if p >= len(in) {
			return 0, false
		}
		c := in[p]
		if c == '=' && p == ks {
			continue
		}
		if isHTMLSpace(c) || c == '/' || c == '>' || c == '=' {
			break
		}
	}
	// Value.
	if p = skipWhiteSpace(in, p); p >= len(in) {
		return 0, false
	}
	switch in[p] {
	case '/':
		return p + 1, true
	case '=':
	default:
		return p, true
	}
	if p = skipWhiteSpace(in, p+1); p >= len(in) {
		return 0, false
	}
	switch quote := in[p]; quote {
	case '>':
		return p, true
	case '\'', '"':
		i := strings.IndexByte(in[p+1:], quote)
		if i < 0 {
			return 0, false
		}
		return p + 1 + i + 1, true
	}
	for p++; p < len(in); p++ {
		if c := in[p]; isHTMLSpace(c) {
			return p + 1, true
		} else if c == '>' {
			return p, true
		}
	}
	return 0, false
}

// skipWhiteSpace returns the first position from p that is not whitespace.
func skipWhiteSpace(in string, p int) int {
	for p < len(in) && isHTMLSpace(in[p]) {
		p++
	}
	return p
}

// untilCloseAngle returns the position after the first '>' from p, or the
// end of the page (readUntilCloseAngle).
func untilCloseAngle(in string, p int) int {
	if i := strings.IndexByte(in[p:], '>'); i >= 0 {
		return p + i + 1
	}
	return len(in)
}

// readMarkupDeclaration returns where a "<!" token ends, p being after the
// "<!": a comment, or a doctype or bogus comment up to the next '>'.
// (With CDATA not allowed, the Tokenizer's default, "<![CDATA[" starts a
// bogus comment too; "DOCTYPE" holds no '>'.)
func readMarkupDeclaration(in string, p int) int {
	if len(in)-p < 2 {
		return len(in)
	}
	if in[p] == '-' && in[p+1] == '-' {
		return readComment(in, p+2)
	}
	return untilCloseAngle(in, p)
}

// readComment returns where a comment ends, p being after its "<!--"
// (Tokenizer.readComment): after "-->", "--!>", or the "<!-->" and
// "<!--->" of an empty comment; or at the end of the page.
func readComment(in string, p int) int {
	dashCount := 0
	beginning := true
	for p < len(in) {
		c := in[p]
		p++
		switch c {
		case '-':
			dashCount++
			continue
		case '>':
			if dashCount >= 2 || beginning {
				return p
			}
		case '!':
			if dashCount >= 2 {
				if p >= len(in) {
					return len(in)
				}
				c = in[p]
				p++
				if c == '>' {
					return p
				} else if c == '-' {
					dashCount = 1
					beginning = false
					continue
				}
			}
		}
		dashCount = 0
		beginning = false
	}
	return len(in)
}

// rawTextElement returns the lower-cased name of a start tag whose element
// holds raw text or RCDATA (Tokenizer.readStartTag), or "".
func rawTextElement(name string) string {
	for _, s := range [...]string{"iframe", "noembed", "noframes", "noscript", "plaintext", "script", "style", "textarea", "title", "xmp"} {
		if len(name) == len(s) && equalFoldASCII(name, s) {
			return s
		}
	}
	return ""
}

// rawTextEnd returns where the raw text or RCDATA from p ends
// (readRawOrRCDATA): at the first "</tag" followed by whitespace, '/' or
// '>', or at the end of the page.
func rawTextEnd(in string, p int, tag string) int {
	for {
		i := strings.Index(in[p:], "</")
		if i < 0 {
			return len(in)
		}
		p += i + 2
		if ok, _, eof := rawEndTagAt(in, p, tag); ok {
			return p - 2
		} else if eof {
			return len(in)
		}
	}
}

// rawEndTagAt reports whether in[p:] is tag (lower-case, ASCII letters),
// in any case, and a byte that ends a tag name (readRawEndTag). When not,
// next is where the mismatch is, and eof says the page ended first.
func rawEndTagAt(in string, p int, tag string) (ok bool, next int, eof bool) {
	for i := 0; i < len(tag); i++ {
		if p >= len(in) {
			return false, p, true
		}
		if c := in[p]; c != tag[i] && c != tag[i]-('a'-'A') {
			return false, p, false
		}
		p++
	}
	if p >= len(in) {
		return false, p, true
	}
	switch in[p] {
	case ' ', '\n', '\r', '\t', '\f', '/', '>':
		return true, p, false
	}
	return false, p, false
}

// scriptEnd returns where a script's text from p ends (readScript,
// following the script data states of the HTML tokenizer, whose "<!--"
// hides "</script>" in some cases): at its "</script", or at the end of
// the page. The labels are the Tokenizer's.
func scriptEnd(in string, p int) int {
	const script = "script"
	var (
		c        byte
		ok, eof  bool
		i, after int
	)
	// read is the Tokenizer's readByte: the page's end returns len(in).
	read := func() bool {
		if p >= len(in) {
			return false
		}
		c = in[p]
		p++
		return true
	}

scriptData:
	if i = strings.IndexByte(in[p:], '<'); i < 0 {
		return len(in)
	}
	p += i + 1
	goto scriptDataLessThanSign

scriptDataLessThanSign:
	if !read() {
		return len(in)
	}
	switch c {
	case '/':
		goto scriptDataEndTagOpen
	case '!':
		goto scriptDataEscapeStart
	}
	p--
	goto scriptData

scriptDataEndTagOpen:
	if ok, p, eof = rawEndTagAt(in, p, script); ok {
		return p - len("</script")
	} else if eof {
		return len(in)
	}
	goto scriptData

scriptDataEscapeStart:
	if !read() {
		return len(in)
	}
	if c == '-' {
		goto scriptDataEscapeStartDash
	}
	p--
	goto scriptData

scriptDataEscapeStartDash:
	if !read() {
		return len(in)
	}
	if c == '-' {
		goto scriptDataEscapedDashDash
	}
	p--
	goto scriptData

scriptDataEscaped:
	if !read() {
		return len(in)
	}
	switch c {
	case '-':
		goto scriptDataEscapedDash
	case '<':
		goto scriptDataEscapedLessThanSign
	}
	goto scriptDataEscaped

scriptDataEscapedDash:
	if !read() {
		return len(in)
	}
	switch c {
	case '-':
		goto scriptDataEscapedDashDash
	case '<':
		goto scriptDataEscapedLessThanSign
	}
	goto scriptDataEscaped

scriptDataEscapedDashDash:
	if !read() {
		return len(in)
	}
	switch c {
	case '-':
		goto scriptDataEscapedDashDash
	case '<':
		goto scriptDataEscapedLessThanSign
	case '>':
		goto scriptData
	}
	goto scriptDataEscaped

scriptDataEscapedLessThanSign:
	if !read() {
		return len(in)
	}
	if c == '/' {
		goto scriptDataEscapedEndTagOpen
	}
	if isASCIILetter(c) {
		goto scriptDataDoubleEscapeStart
	}
	p--
	goto scriptData

scriptDataEscapedEndTagOpen:
	if ok, p, eof = rawEndTagAt(in, p, script); ok {
		return p - len("</script")
	} else if eof {
		return len(in)
	}
	goto scriptDataEscaped

scriptDataDoubleEscapeStart:
	p--
	for i = 0; i < len(script); i++ {
		if !read() {
			return len(in)
		}
		if c != script[i] && c != script[i]-('a'-'A') {
			p--
			goto scriptDataEscaped
		}
	}
	if !read() {
		return len(in)
	}
	switch c {
	case ' ', '\n', '\r', '\t', '\f', '/', '>':
		goto scriptDataDoubleEscaped
	}
	p--
	goto scriptDataEscaped

scriptDataDoubleEscaped:
	if !read() {
		return len(in)
	}
	switch c {
	case '-':
		goto scriptDataDoubleEscapedDash
	case '<':
		goto scriptDataDoubleEscapedLessThanSign
	}
	goto scriptDataDoubleEscaped

scriptDataDoubleEscapedDash:
	if !read() {
		return len(in)
	}
	switch c {
	case '-':
		goto scriptDataDoubleEscapedDashDash
	case '<':
		goto scriptDataDoubleEscapedLessThanSign
	}
	goto scriptDataDoubleEscaped

scriptDataDoubleEscapedDashDash:
	if !read() {
		return len(in)
	}
	switch c {
	case '-':
		goto scriptDataDoubleEscapedDashDash
	case '<':
		goto scriptDataDoubleEscapedLessThanSign
	case '>':
		goto scriptData
	}
	goto scriptDataDoubleEscaped

scriptDataDoubleEscapedLessThanSign:
	if !read() {
		return len(in)
	}
	if c == '/' {
		goto scriptDataDoubleEscapeEnd
	}
	p--
	goto scriptDataDoubleEscaped

scriptDataDoubleEscapeEnd:
	// The Tokenizer steps back to the '<' of a matching "</script" and
	// then forward by len("</script>"): past the byte after the name.
	if ok, after, eof = rawEndTagAt(in, p, script); ok {
		p = after + 1
		goto scriptDataEscaped
	} else if eof {
		return len(in)
	}
	p = after
	goto scriptDataDoubleEscaped
}

func isASCIILetter(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
