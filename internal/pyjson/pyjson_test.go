package pyjson

import "testing"

// Expected values printed by python3 -c 'import json,sys; print(json.dumps(sys.argv[1]))'.
func TestQuoteLikePython(t *testing.T) {
	for in, want := range map[string]string{
		"jdoe@deploy1002":       `"jdoe@deploy1002"`,
		"a\"b\\c\nd\re\tf\bg\f": `"a\"b\\c\nd\re\tf\bg\f"`,
		"<&>":                   `"<&>"`,
		"\x00\x1f\x7f":          `"\u0000\u001f\u007f"`,
		"Zoë":                   `"Zo\u00eb"`,
		"😀":                     `"\ud83d\ude00"`,
		"bad\xff":               `"bad\ufffd"`,
	} {
		if got := Quote(in); got != want {
			t.Errorf("Quote(%q) = %s, want %s", in, got, want)
		}
	}
}
