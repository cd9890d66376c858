package calendar

import (
	"fmt"
	"strings"
	"time"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// This file keeps the first implementation of ParseDeploymentsHTML, which
// builds the whole tree with html.Parse and walks it with class selectors,
// as the oracle of the differential tests (markup_diff_test.go). It is
// slow (a year of the page: ~70 ms, 15 MB) but its reading of the markup
// is the HTML5 tree's, which makes it the reference for the streaming
// scanner. The meaning of a card's fields (pageBuilder.closeCard,
// Window.addDeployer, ...) is shared, so the comparison is about finding
// the fields. Its name cleaning (oracleWindowName) is the original one.

func oracleParseDeploymentsHTML(page, pageURL string, unreadableLength time.Duration) (Page, error) {
	if unreadableLength <= 0 {
		unreadableLength = DefaultUnreadableWindowLength
	}
	doc, err := html.Parse(strings.NewReader(page))
	if err != nil {
		return Page{}, fmt.Errorf("parse html: %w", err)
	}
	items := oracleSelectAll(doc, classItem)
	if len(items) == 0 {
		return Page{}, ErrNoWindows
	}
	b := pageBuilder{pageURL: pageURL, unreadableLength: unreadableLength}
	for _, item := range items {
		i := b.openCard()
		if w, ok := oracleParseItem(&b, i, item); ok {
			b.setWindow(i, w)
		}
	}
	return b.page()
}

func oracleParseItem(b *pageBuilder, i int, item *html.Node) (Window, bool) {
	startAttr, hasStart := oracleLookupAttr(item, "data-utcstart")
	endAttr, hasEnd := oracleLookupAttr(item, "data-utcend")
	w, ok := b.closeCard(i, []byte(oracleAttr(item, "id")), []byte(startAttr), hasStart, []byte(endAttr), hasEnd)
	if !ok {
		return w, false
	}
	var name strings.Builder
	for _, n := range oracleSelectAll(item, classWindow) {
		if name.Len() > 0 {
			name.WriteByte(' ')
		}
		oracleAppendText(&name, n)
	}
	w.Name = oracleWindowName(name.String())
	for _, n := range oracleSelectAll(item, classDeployer, classNick) {
		w.addDeployer(oracleNickText(n))
	}
	for _, n := range oracleSelectAll(item, classChanges, classNick) {
		w.addOwner(oracleNickText(n))
	}
	return w, true
}

func oracleNickText(n *html.Node) string {
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
	oracleAppendText(&b, n)
	return cleanText(b.String())
}

func oracleAppendText(b *strings.Builder, n *html.Node) {
	switch n.Type {
	case html.TextNode:
		b.WriteString(n.Data)
		return
	case html.ElementNode:
		if oracleHasClass(n, classItem) {
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
		oracleAppendText(b, c)
	}
	if n.Type == html.ElementNode && !inlineElement(n.DataAtom) {
		b.WriteByte(' ')
	}
}

func oracleSelectAll(root *html.Node, classes ...string) []*html.Node {
	var out []*html.Node
	inItem := oracleHasClass(root, classItem)
	var walk func(n *html.Node, i int)
	walk = func(n *html.Node, i int) {
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			if c.Type != html.ElementNode {
				continue
			}
			if inItem && oracleHasClass(c, classItem) {
				continue
			}
			next := i
			if oracleHasClass(c, classes[i]) {
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

func oracleHasClass(n *html.Node, class string) bool {
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

func oracleLookupAttr(n *html.Node, key string) (string, bool) {
	for _, a := range n.Attr {
		if a.Namespace == "" && a.Key == key {
			return a.Val, true
		}
	}
	return "", false
}

func oracleAttr(n *html.Node, key string) string {
	v, _ := oracleLookupAttr(n, key)
	return v
}

func oracleWindowName(s string) string {
	s = cleanText(s)
	s = strings.ReplaceAll(s, backportDisclaimer, " ")
	s = oracleRemoveMaxPatches(s)
	return cleanText(s)
}

func oracleRemoveMaxPatches(s string) string {
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
