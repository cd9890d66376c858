package ceph

import (
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"poolbot/internal/testenv"
)

// What a site's gateway said, for failure messages. radosgw logs every
// request at its default level (debug rgw = 1): a beast access line with
// the method, path, HTTP status and latency, and a level-0 "ERROR:" line
// for an operation that failed, e.g. an UploadPart for an upload the site
// does not know:
//
//	... 0 req 1040... s3:put_obj ERROR: get_multipart_info returned -2009: (2009) Unknown error 2009
//	... 1 beast: 0x...: 127.0.0.1 - registry [...] "PUT /<bucket>/<key>?partNumber=1&uploadId=... HTTP/1.1" 404 248 - "aws-sdk-go/..." - latency=0.000000000s
//
// That costs nothing more than the default, and it is the only record of
// an S3 error the registry swallows (distribution ignores the error of
// the blob writer's Close after a PATCH and answers 202 with the size
// actually stored).

// beastLine matches a beast access line's request and status.
var beastLine = regexp.MustCompile(`beast: \S+ \S+ - \S+ \[[^\]]*\] "(\S+) (\S+) [^"]*" (\d{3}) `)

// logTime is the layout of the timestamp that starts each log line.
const logTime = "2006-01-02T15:04:05.000-0700"

// GatewayErrors returns the gateway's log lines since the given time that
// record a failed request: every "ERROR:" line, every answer 5xx, and
// 4xx answers to writes (a 404 to a GET or HEAD is a registry looking
// whether something exists, which it does all the time). At most max
// lines, the last ones.
func (s *Site) GatewayErrors(since time.Time, max int) []string {
	return testenv.LastLines(filepath.Join(s.Dir, "log", logName("rgw")), max, func(line string) bool {
		ts, _, ok := strings.Cut(line, " ")
		if !ok {
			return false
		}
		at, err := time.Parse(logTime, ts)
		return err == nil && !at.Before(since) && failedRequest(line)
	})
}

// failedRequest says whether a gateway log line records a failure.
func failedRequest(line string) bool {
	if strings.Contains(line, " ERROR: ") {
		return true
	}
	m := beastLine.FindStringSubmatch(line)
	if m == nil {
		return false
	}
	status, _ := strconv.Atoi(m[3])
	return status >= 500 || status >= 400 && m[1] != "GET" && m[1] != "HEAD"
}
