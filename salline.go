package poolbot

import (
	"strconv"
	"strings"
)

// SALPrefix starts every Server Admin Log line poolbot logs, so SAL
// readers can search for it.
const SALPrefix = "poolbot"

// SALLine formats a SAL message about a request the way spicerack's
// cookbook lines look ("START - …", "END (PASS) - …"), naming the request
// and the operator: "poolbot #12 alice: START - depool apus in codfw: T422166 maint".
func SALLine(id RequestID, operator, text string) string {
	return strings.Join([]string{SALPrefix, id.String(), operator + ":", text}, " ")
}

// ParseSALLine splits a line made by SALLine into the request id, the
// operator and the text; ok is false for any other line. The tcpircbot
// sink uses it to credit the line to its operator.
func ParseSALLine(line string) (id RequestID, operator, text string, ok bool) {
	rest, ok := strings.CutPrefix(line, SALPrefix+" #")
	if !ok {
		return 0, "", "", false
	}
	num, rest, ok := strings.Cut(rest, " ")
	n, err := strconv.ParseInt(num, 10, 64)
	if !ok || err != nil || n <= 0 || strings.Trim(num, "0123456789") != "" {
		return 0, "", "", false
	}
	operator, text, ok = strings.Cut(rest, ": ")
	if !ok || operator == "" || strings.ContainsAny(operator, " @") {
		return 0, "", "", false
	}
	return RequestID(n), operator, text, true
}
