package calendar

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// Differential tests: the streaming scanner (ParseDeploymentsHTML) against
// the tree-walking oracle (markup_oracle_test.go).

// sameAsOracle fails t when the two parsers disagree on page.
func sameAsOracle(t *testing.T, name, page string) {
	t.Helper()
	got, gotErr := ParseDeploymentsHTML(page, fixturePageURL, 0)
	want, wantErr := oracleParseDeploymentsHTML(page, fixturePageURL, 0)
	if fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
		t.Fatalf("%s: error %v, oracle %v\npage: %q", name, gotErr, wantErr, page)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s: scanner and oracle disagree\npage:   %q\nscanner: %+v\noracle:  %+v", name, page, got, want)
	}
}

// TestParseMatchesOracle compares the parsers on the fixture, a generated
// year of the page, the inputs of the unit tests, the fuzz seeds and the
// fuzz corpus in testdata/fuzz.
func TestParseMatchesOracle(t *testing.T) {
	pages := map[string]string{
		"fixture":    readFixture(t, "deployments-2026-10-26.html"),
		"year":       yearOfMarkup(),
		"items test": itemsTestPage,
		"names test": namesTestPage,
		// html.Parse keeps <body> open after </body>; end tags in any case.
		"body card":    `<body class="deploycal-item" data-utcstart="2026-11-02T08:00Z" data-utcend="2026-11-02T09:00Z"><div class="deploycal-item-window">a</div></body><div class="deploycal-item-window">b</div>`,
		"after body":   `<html><body><div class="deploycal-item" data-utcstart="2026-11-02T08:00Z" data-utcend="2026-11-02T09:00Z"><div class="deploycal-item-window">a</body></html>c</div>`,
		"end tag case": `<DIV class="deploycal-item" data-utcstart="2026-11-02T08:00Z" data-utcend="2026-11-02T09:00Z"><SPAN class="deploycal-item-window">a</Span>b</DIV>`,
		"broken card":  `<div class="deploycal-item" id="a" data-utcstart="tomorrow" data-utcend="2026-11-02T09:00:00Z"></div><div class="deploycal-item" id="b"></div>`,
	}
	for i, s := range markupSeeds(t) {
		pages[fmt.Sprintf("seed %d", i)] = s
	}
	for _, target := range []string{"FuzzParseDeploymentsHTML", "FuzzParseDeploymentsHTMLDifferential"} {
		files, _ := filepath.Glob(filepath.Join("testdata", "fuzz", target, "*"))
		for _, f := range files {
			v := readCorpusEntry(t, f)
			if target == "FuzzParseDeploymentsHTMLDifferential" {
				v = generatePage([]byte(v))
			}
			pages[f] = v
		}
	}
	for name, page := range pages {
		sameAsOracle(t, name, page)
	}
}

// readCorpusEntry reads a one-value entry of the fuzz corpus format
// ("go test fuzz v1" and a string(...) or []byte(...) line).
func readCorpusEntry(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	if !sc.Scan() || sc.Text() != "go test fuzz v1" || !sc.Scan() {
		t.Fatalf("%s: not a fuzz corpus entry", path)
	}
	line := sc.Text()
	for _, prefix := range []string{"string(", "[]byte("} {
		if strings.HasPrefix(line, prefix) && strings.HasSuffix(line, ")") {
			v, err := strconv.Unquote(line[len(prefix) : len(line)-1])
			if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			return v
		}
	}
	t.Fatalf("%s: unexpected value %q", path, line)
	return ""
}

// FuzzParseDeploymentsHTMLDifferential compares the parsers on pages
// generated from the fuzzer's bytes. The pages are well-formed (every
// element closed in order, no tables, paragraphs or list items, whose
// implied ends and foster parenting html.Parse applies and the scanner
// does not model) and made of the markup's classes, attributes in all
// their spellings, nested cards, windows and nicks, hidden elements,
// character references, <br>, <pre> and comments.
func FuzzParseDeploymentsHTMLDifferential(f *testing.F) {
	f.Add([]byte{0, 0, 1, 2, 3, 4, 5})
	f.Add([]byte("\x00\x01\x02\x03\x10\x21\x32\x43\x54\x65\x76\x87\x98\xa9\xba\xcb\xdc\xed\xfe"))
	f.Add(bytes.Repeat([]byte{0, 7, 0, 9, 2, 5, 1, 2, 1}, 8))
	// Above the limit, so that its early return is no new coverage (see
	// FuzzParseDeploymentsHTML).
	f.Add(bytes.Repeat([]byte{0, 7, 0, 9, 2, 5, 1, 2, 1}, maxGeneratorInput/9+1))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > maxGeneratorInput {
			return
		}
		sameAsOracle(t, "generated", generatePage(data))
	})
}

// maxGeneratorInput bounds the bytes FuzzParseDeploymentsHTMLDifferential
// turns into a page (each byte can add up to ~100 bytes of markup).
const maxGeneratorInput = 512

// Pools the page generator draws from.
var (
	genTags    = []string{"div", "span", "b", "small", "i", "code", "section", "a", "x-card", "DIV", "Span", "pre", "template", "em"}
	genClasses = []string{classItem, classWindow, classDeployer, classChanges, classNick, "ircnick-container", "deploycal-item-time", "mw-parser-output", "deploycal-itemx", "deploycal&#45;item"}
	genTimes   = []string{"2026-11-02T08:00:00+00:00", "2026-11-02T09:00:00Z", "2026-11-02 10:00", "20261102T1100", "tomorrow", "", "2026-11-02T07:00:00Z", "2026-11-02T08:00:00&#43;00:00"}
	genTexts   = []string{"UTC ", "morning", " backport window", "(Max 6 patches)", backportDisclaimer, "Amir1", "irc-nickname", "Urbanecm",
		"&amp;", "&nbsp;", "\n", "  ", "a&lt;b", "é", "&#13;&#10;", "[m]x`^{|}-", "Lucas_WMDE", " (Lucas)", ",", "\t", "1abc", "\r\n"}
	genAttrNames = map[string][]string{
		"class": {"class", "CLASS", "Class"},
		"id":    {"id", "ID"},
		"start": {"data-utcstart", "DATA-UTCSTART"},
		"end":   {"data-utcend", "Data-UtcEnd"},
	}
)

// generatePage turns bytes into a well-formed page (see the fuzz target).
func generatePage(data []byte) string {
	next := func() int {
		if len(data) == 0 {
			return 0
		}
		b := data[0]
		data = data[1:]
		return int(b)
	}
	pick := func(list []string) string { return list[next()%len(list)] }
	var b strings.Builder
	var open []string
	attr := func(kind, value string) {
		b.WriteString(" " + pick(genAttrNames[kind]))
		switch q := next() % 4; {
		case q == 0 && value != "" && !strings.ContainsAny(value, " \t\"'=<>`"):
			b.WriteString("=" + value)
		case q == 1:
			b.WriteString(" = '" + value + "'")
		default:
			b.WriteString(`="` + value + `"`)
		}
	}
	for len(data) > 0 {
		switch op := next() % 10; op {
		case 0, 1: // open an element
			tag := pick(genTags)
			if tag == "a" && slicesContainsFold(open, "a") {
				tag = "span" // nested <a> is closed by html.Parse
			}
			b.WriteString("<" + tag)
			flags := next()
			if flags&1 != 0 {
				var classes []string
				for n := next() % 3; n >= 0; n-- {
					classes = append(classes, pick(genClasses))
				}
				attr("class", strings.Join(classes, pick([]string{" ", "\t", "  "})))
			}
			if flags&2 != 0 {
				attr("id", pick([]string{"deploycal-item-20261102T0800", "x", "", "a&amp;b", "dup"}))
			}
			if flags&4 != 0 {
				attr("start", pick(genTimes))
			}
			if flags&8 != 0 {
				attr("end", pick(genTimes))
			}
			if flags&16 != 0 {
				attr("class", classItem) // a repeated attribute: the first counts
			}
			b.WriteString(pick([]string{">", " >", "\n>"}))
			open = append(open, tag)
		case 2, 3: // close the innermost element
			if len(open) > 0 {
				tag := open[len(open)-1]
				open = open[:len(open)-1]
				b.WriteString("</" + pick([]string{tag, strings.ToUpper(tag)}) + ">")
			}
		case 4, 5, 6:
			b.WriteString(pick(genTexts))
		case 7:
			v := pick([]string{"<br>", "<br/>", "<img src=x>", "<hr>", "<wbr>", `<span class="ircnick"/>`})
			b.WriteString(v)
			if strings.HasPrefix(v, "<span") {
				open = append(open, "span") // not self-closing in HTML
			}
		case 8:
			b.WriteString(pick([]string{"<style>.a{color:red}</style>", "<script>var x = '<b>';</script>", "<!-- c -->", "<style class=ircnick>n</style>"}))
		case 9:
			b.WriteString("<pre>\n")
			open = append(open, "pre")
		}
	}
	for i := len(open) - 1; i >= 0; i-- {
		b.WriteString("</" + open[i] + ">")
	}
	return b.String()
}

func slicesContainsFold(list []string, s string) bool {
	for _, v := range list {
		if strings.EqualFold(v, s) {
			return true
		}
	}
	return false
}

// BenchmarkParseDeploymentsHTMLYearOracle measures the tree-walking parser,
// for comparison with BenchmarkParseDeploymentsHTMLYear.
func BenchmarkParseDeploymentsHTMLYearOracle(b *testing.B) {
	page := yearOfMarkup()
	b.SetBytes(int64(len(page)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := oracleParseDeploymentsHTML(page, fixturePageURL, 0); err != nil {
			b.Fatal(err)
		}
	}
}
