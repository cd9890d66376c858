package poolbot

import "strings"

// SALPrefix starts every Server Admin Log line poolbot logs, so SAL
// readers can search for it.
const SALPrefix = "poolbot"

// SALLine formats a SAL message about a request the way spicerack's
// cookbook lines look ("START - …", "END (PASS) - …"), naming the request
// and the operator: "poolbot #12 alice: START - depool apus in codfw: T422166 maint".
func SALLine(id RequestID, operator, text string) string {
	return strings.Join([]string{SALPrefix, id.String(), operator + ":", text}, " ")
}
