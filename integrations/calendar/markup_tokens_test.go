package calendar

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/net/html"
)

// sameTokens fails t when markupTokens and x/net/html's Tokenizer split
// page differently: kind, raw bytes, or a text token's text.
func sameTokens(t *testing.T, name, page string) {
	t.Helper()
	want := html.NewTokenizer(strings.NewReader(page))
	got := newMarkupTokens(page)
	for i := 0; ; i++ {
		tt := want.Next()
		wantRaw := string(want.Raw()) // before Text, which decodes in place
		kind := got.next()
		if kind != tokenKindOf(tt) || got.raw != wantRaw && tt != html.ErrorToken {
			t.Fatalf("%s: token %d: %v %q, Tokenizer %v %q\npage: %q", name, i, kind, got.raw, tt, wantRaw, page)
		}
		switch tt {
		case html.ErrorToken:
			return
		case html.TextToken:
			if w, g := string(want.Text()), got.text(); g != w {
				t.Fatalf("%s: token %d: text %q, Tokenizer %q\npage: %q", name, i, g, w, page)
			}
		}
	}
}

func tokenKindOf(tt html.TokenType) tokenKind {
	switch tt {
	case html.TextToken:
		return tokenText
	case html.StartTagToken, html.SelfClosingTagToken:
		return tokenStartTag
	case html.EndTagToken:
		return tokenEndTag
	case html.CommentToken, html.DoctypeToken:
		return tokenOther
	}
	return tokenEnd
}

func (k tokenKind) String() string {
	return [...]string{"end", "text", "start tag", "end tag", "other"}[k]
}

// tokenCases are the corners of the Tokenizer: every way a tag, comment,
// raw text element or script can end, or be cut off by the end of the
// page, and text that needs decoding.
var tokenCases = []string{
	"", "a", "<", "a<", "</", "a</", "<!", "<!-", "<!--", "<?", "</>", "</ x>", "</1", "a<1b", "<<a>", "a<b",
	"<a", "<a ", "<a b", "<a b=", "<a b='", `<a b="c"`, "<a b=c", "<a/", "<a b/", "<a =b>", "<a ==b>", "<a b = c d>",
	"<a b=c/>", "<a b='c'/>", "<a =\"x>\"y>", "<a b =\"x>\">", "<a b/ c>", "<a/b>", "<a\tb\nc\fd\re>", "<a b='>'>", "<a b=>x", "<a b=\"c>d\" e=f>",
	"<a b=c d=e f='g' h=\"i\">", "<A B=C B=D/>", "<br/>", "<x-y>", "<a\x00b c\x00=d\x00>",
	"</a", "</a b", "</a b='>'>", "</A >", "</a/>", "</a b=c d>",
	"<!-->", "<!--->", "<!---->", "<!-- a -->", "<!-- a --!>", "<!-- a --!-->", "<!-- a --!x -->", "<!-- a -", "<!-- a --",
	"<!-- a --!", "<!--a-->b", "<!- a>", "<!>", "<!x", "<!DOCTYPE html>", "<!doctype>", "<!DOCTYPE", "<!DOCTY", "<!DOCTYPE ",
	"<![CDATA[x]]>", "<?xml x?>", "<?x", "</ a", "</\x00>",
	"<style>a<b>c</style>d", "<style></style>", "<STYLE>a</Style >", "<style>a</styl", "<style>a</style", "<style>a</stylex>",
	"<title>a&amp;b<i>\r\n</title>", "<textarea>\na&lt;</textarea>", "<xmp>&amp;</xmp>", "<iframe>x</iframe>",
	"<noscript><b>x</b></noscript>", "<noembed>x", "<noframes>", "<plaintext>a</plaintext><b>", "<plaintext>",
	"<style>\x00&amp;\r</style>", "a\x00&amp;\r\nb\rc", "&lt&gt;&#0;&#x110000;&notit;&amp", "a\r", "\r\n\r\r\n",
	"<script>a<b>c</script>", "<script></script>", "<SCRIPT>x</sCrIpT>", "<script>x</script", "<script>x</scrip",
	"<script><!--", "<script><!-- x --></script>", "<script><!-- <script>x</script> --></script>y</script>",
	"<script><!-- <script>x</script>", "<script><!--<script></script>--></script>", "<script><!-- </script> -->",
	"<script><!--x-->y</script>", "<script><!-x</script>", "<script><! x</script>", "<script><!--<SCRIPT/></script>",
	"<script><!--<scrip</script>", "<script><!--<scriptx></script>", "<script><!--<script>--><b></script>",
	"<script><!--<script>-<</script>", "<script><!--<script>--</script>", "<script><!--<script><</scriptx></script>",
	"<script><!---></script>", "<script><!--<a></script>", "<script><!--</x></script>", "<script>\x00</script>",
	"<script><!--<script", "<script><!--<script>", "<script><!--<script>-", "<script><!--<script>--", "<script><!--<script><",
	"<script><!--<script></", "<script><!--<script></scr", "<script><!--<", "<script><!--</", "<script><!--<s", "<script><!--a-",
	"<script><!-- --><script></script>x</script>", "<script><!--<script>--></script>x</script>",
	"<script><!-- -x-><script></script>x</script>", "<script><!-- ---><script></script>x</script>",
	"<pre>\nx</pre>", "<textarea/>x</textarea>", "<title x='</title>'>a</title>",
}

// TestMarkupTokensMatchTokenizer compares the two on the corner cases, the
// fixture, a year of the page, the fuzz seeds and the fuzz corpora.
func TestMarkupTokensMatchTokenizer(t *testing.T) {
	pages := map[string]string{
		"fixture": readFixture(t, "deployments-2026-10-26.html"),
		"year":    yearOfMarkup(),
	}
	for i, s := range tokenCases {
		pages[fmt.Sprintf("case %d", i)] = s
	}
	for i, s := range markupSeeds(t) {
		pages[fmt.Sprintf("seed %d", i)] = s
	}
	for _, target := range []string{"FuzzParseDeploymentsHTML", "FuzzMarkupTokens"} {
		files, _ := filepath.Glob(filepath.Join("testdata", "fuzz", target, "*"))
		for _, f := range files {
			pages[f] = readCorpusEntry(t, f)
		}
	}
	for name, page := range pages {
		sameTokens(t, name, page)
	}
}

// FuzzMarkupTokens compares markupTokens with x/net/html's Tokenizer on
// any input: the parser's results on any page are then what they were when
// it read the Tokenizer's tokens.
func FuzzMarkupTokens(f *testing.F) {
	for _, s := range tokenCases {
		f.Add(s)
	}
	for _, s := range markupSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, page string) {
		if len(page) > maxFuzzPage {
			return
		}
		sameTokens(t, "fuzzed", page)
	})
}
