// Package mediawiki writes answers in the MediaWiki action API's wire
// format, for the stand-ins of wikitech used by tests and the lab.
package mediawiki

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
)

// WriteAPI writes v as MediaWiki does with formatversion=1: JSON with
// every non-ASCII character escaped as \uXXXX (astral characters as
// surrogate pairs), and the MediaWiki-API-Error header when v is an error
// answer ({"error": {"code": …}}).
func WriteAPI(w http.ResponseWriter, v any) {
	raw, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	var out bytes.Buffer
	for _, r := range string(raw) {
		switch {
		case r < 0x80:
			out.WriteRune(r)
		case r > 0xffff:
			r -= 0x10000
			fmt.Fprintf(&out, `\u%04x\u%04x`, 0xd800+(r>>10), 0xdc00+(r&0x3ff))
		default:
			fmt.Fprintf(&out, `\u%04x`, r)
		}
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	if m, ok := v.(map[string]any); ok {
		if e, ok := m["error"].(map[string]any); ok {
			w.Header().Set("MediaWiki-API-Error", fmt.Sprint(e["code"]))
		}
	}
	_, _ = w.Write(out.Bytes())
}
