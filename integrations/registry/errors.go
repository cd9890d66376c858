package registry

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"unicode/utf8"
)

// Error codes distribution defines (registry/api/errcode): they appear in
// the "code" field of error bodies and are passed through to ProbeResult.Code.
const (
	CodeUnknown                 = "UNKNOWN"
	CodeUnsupported             = "UNSUPPORTED"
	CodeUnauthorized            = "UNAUTHORIZED"
	CodeDenied                  = "DENIED"
	CodeUnavailable             = "UNAVAILABLE"
	CodeTooManyRequests         = "TOOMANYREQUESTS"
	CodeDigestInvalid           = "DIGEST_INVALID"
	CodeSizeInvalid             = "SIZE_INVALID"
	CodeRangeInvalid            = "RANGE_INVALID"
	CodeNameInvalid             = "NAME_INVALID"
	CodeTagInvalid              = "TAG_INVALID"
	CodeNameUnknown             = "NAME_UNKNOWN"
	CodeManifestUnknown         = "MANIFEST_UNKNOWN"
	CodeManifestInvalid         = "MANIFEST_INVALID"
	CodeManifestUnverified      = "MANIFEST_UNVERIFIED"
	CodeManifestBlobUnknown     = "MANIFEST_BLOB_UNKNOWN"
	CodeBlobUnknown             = "BLOB_UNKNOWN"
	CodeBlobUploadUnknown       = "BLOB_UPLOAD_UNKNOWN"
	CodeBlobUploadInvalid       = "BLOB_UPLOAD_INVALID"
	CodePaginationNumberInvalid = "PAGINATION_NUMBER_INVALID"
)

// Codes of our own for failures that carry no (usable) registry code. They
// are lower case so they never collide with a registry code.
const (
	CodeOK                = "ok"
	CodeNetwork           = "network"            // connection refused/reset, DNS, TLS
	CodeTimeout           = "timeout"            // the probe's or a request's deadline passed
	CodeCanceled          = "canceled"           // the caller cancelled
	CodeHTTP4xx           = "http_4xx"           // a 4xx without a registry code we know
	CodeHTTP5xx           = "http_5xx"           // a 5xx without a registry code we know (or UNKNOWN)
	CodeUnexpectedStatus  = "unexpected_status"  // a non-error status that is not the expected one
	CodeBadResponse       = "bad_response"       // missing/invalid Location, Range or headers
	CodeBlobMismatch      = "blob_mismatch"      // read back other bytes, length or digest than written
	CodeInvalidRepository = "invalid_repository" // the configured repository breaks the name grammar
	CodeInternal          = "internal"           // could not even build the request
)

// isRegistryCode reports whether code is one distribution defines and we
// pass through; any other code in a body is reduced to a status class so
// metric labels stay bounded. UNKNOWN is left out on purpose: it only says
// "internal error" and the status class says the same.
func isRegistryCode(code string) bool {
	switch code {
	case CodeUnsupported, CodeUnauthorized, CodeDenied, CodeUnavailable, CodeTooManyRequests,
		CodeDigestInvalid, CodeSizeInvalid, CodeRangeInvalid, CodeNameInvalid, CodeTagInvalid,
		CodeNameUnknown, CodeManifestUnknown, CodeManifestInvalid, CodeManifestUnverified,
		CodeManifestBlobUnknown, CodeBlobUnknown, CodeBlobUploadUnknown, CodeBlobUploadInvalid,
		CodePaginationNumberInvalid:
		return true
	}
	return false
}

// RegistryError is one entry of a registry error body.
type RegistryError struct {
	Code    string          `json:"code"`
	Message string          `json:"message,omitempty"`
	Detail  json.RawMessage `json:"detail,omitempty"`
}

func (e RegistryError) String() string {
	var b strings.Builder
	b.WriteString(e.Code)
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	if d := detailText(e.Detail); d != "" {
		b.WriteString(" (")
		b.WriteString(d)
		b.WriteString(")")
	}
	return b.String()
}

// detailText renders a detail compactly for humans: strings unquoted, other
// JSON as is, cut to 200 bytes.
func detailText(raw json.RawMessage) string {
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		var buf bytes.Buffer
		if json.Compact(&buf, raw) != nil {
			return ""
		}
		s = buf.String()
	}
	return truncateMiddle(s, maxDetail)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// maxDetail and maxQuotedBody bound what an error message quotes of a
// registry's answer. A storage error's cause comes last (distribution's
// s3 driver: "s3aws: RequestError: send request failed caused by: Put
// \"http://apus.discovery.wmnet:…\": dial tcp 10.2.1.10:443: connect:
// connection refused"), so long texts are cut in the middle.
const (
	maxDetail     = 400
	maxQuotedBody = 1000
)

// truncateMiddle keeps the first third and the last two thirds of n bytes
// of s, with "…" between, on rune boundaries.
func truncateMiddle(s string, n int) string {
	if len(s) <= n {
		return s
	}
	head := n / 3
	for head > 0 && !utf8.RuneStart(s[head]) {
		head--
	}
	tail := len(s) - (n - head)
	for tail < len(s) && !utf8.RuneStart(s[tail]) {
		tail++
	}
	return s[:head] + "…" + s[tail:]
}

// quoteBody renders a response body for an error message that reaches
// chat: trimmed, every control character (CR, LF, NUL, ...) a space,
// invalid UTF-8 replaced, cut in the middle past maxQuotedBody bytes.
func quoteBody(body []byte) string {
	return truncateMiddle(oneLine(string(bytes.TrimSpace(body))), maxQuotedBody)
}

// oneLine makes every control character of s a space and replaces invalid
// UTF-8 (the s3 driver's errors span lines: "...\ncaused by: ...").
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, "\uFFFD"))
}

// errorBody is the distribution/OCI error envelope.
type errorBody struct {
	Errors []RegistryError `json:"errors"`
}

// maxErrorBody bounds how much of an error response is read.
const maxErrorBody = 64 << 10

// ParseErrors decodes a registry error body
// {"errors":[{"code":"...","message":"...","detail":...}]}. It fails on
// anything else (including an empty list or an entry without a code), so a
// caller can fall back to the HTTP status.
func ParseErrors(body []byte) ([]RegistryError, error) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil, errors.New("empty error body")
	}
	if len(body) > maxErrorBody {
		return nil, fmt.Errorf("error body larger than %d bytes", maxErrorBody)
	}
	var eb errorBody
	if err := json.Unmarshal(body, &eb); err != nil {
		return nil, fmt.Errorf("not a registry error body: %w", err)
	}
	if len(eb.Errors) == 0 {
		return nil, errors.New(`registry error body has no "errors"`)
	}
	for i, e := range eb.Errors {
		if e.Code == "" {
			return nil, fmt.Errorf("registry error %d has no code", i)
		}
	}
	return eb.Errors, nil
}

// classifyStatus turns an unexpected response into a stable code: the first
// known registry code in the body wins; otherwise the status decides.
func classifyStatus(status int, errs []RegistryError) string {
	for _, e := range errs {
		if isRegistryCode(e.Code) {
			return e.Code
		}
	}
	switch {
	case status == http.StatusUnauthorized:
		return CodeUnauthorized
	case status == http.StatusForbidden:
		return CodeDenied
	case status == http.StatusTooManyRequests:
		return CodeTooManyRequests
	case status >= 500:
		return CodeHTTP5xx
	case status >= 400:
		return CodeHTTP4xx
	default:
		return CodeUnexpectedStatus
	}
}

// summarizeErrors renders registry errors on one line, bounded.
func summarizeErrors(errs []RegistryError) string {
	parts := make([]string, 0, len(errs))
	for i, e := range errs {
		if i == 3 {
			parts = append(parts, fmt.Sprintf("and %d more", len(errs)-3))
			break
		}
		parts = append(parts, truncateMiddle(e.String(), 2*maxDetail))
	}
	return strings.Join(parts, "; ")
}
