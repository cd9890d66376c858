// Package pyjson writes JSON strings byte for byte as Python's json module
// does by default (ensure_ascii=True): scap and spicerack write their lock
// files and etcd values that way, and poolbot's must read the same to the
// tools (and people) that compare them.
package pyjson

import (
	"strings"
	"unicode/utf16"
)

// Quote returns s as json.dumps(s) would: "\"", "\\" and \n \r \t \b \f
// escaped by name, printable ASCII as it is, everything else as a
// lower-case \uXXXX escape (UTF-16 surrogate pairs above U+FFFF). Go's
// encoding/json differs: it escapes < > & and keeps UTF-8. Invalid UTF-8
// becomes U+FFFD (Python strings cannot hold it either).
func Quote(s string) string {
	const hex = "0123456789abcdef"
	var b strings.Builder
	b.Grow(len(s) + 2)
	u4 := func(r rune) {
		b.WriteString(`\u`)
		b.WriteByte(hex[r>>12&0xf])
		b.WriteByte(hex[r>>8&0xf])
		b.WriteByte(hex[r>>4&0xf])
		b.WriteByte(hex[r&0xf])
	}
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		case '\b':
			b.WriteString(`\b`)
		case '\f':
			b.WriteString(`\f`)
		default:
			switch {
			case r >= 0x20 && r <= 0x7e:
				b.WriteByte(byte(r))
			case r > 0xffff:
				r1, r2 := utf16.EncodeRune(r)
				u4(r1)
				u4(r2)
			default:
				u4(r)
			}
		}
	}
	b.WriteByte('"')
	return b.String()
}
