package testenv

import (
	"flag"
	"strconv"
)

// WaitingParallel sets -test.parallel to n unless the caller chose it.
// TestMain calls it before m.Run in packages whose parallel tests spend
// their time waiting on real servers and processes rather than on the
// CPU, so that more of them run at once than -parallel's default of one
// per core.
func WaitingParallel(n int) {
	if !flag.Parsed() {
		flag.Parse()
	}
	explicit := false
	flag.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "test.parallel" })
	if !explicit {
		_ = flag.Set("test.parallel", strconv.Itoa(max(n, 1)))
	}
}
