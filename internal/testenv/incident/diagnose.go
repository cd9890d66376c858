package incident

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Diagnose says what the S3 sites and the registries recorded as failing
// since the given time, for a story's failure message: each gateway's
// failed requests and "ERROR:" lines (ceph.Site.GatewayErrors: the S3
// answers a registry may have swallowed, such as the 404 NoSuchUpload of
// an UploadPart sent to the site that did not start the upload), and each
// registry's error and warning lines. The gateways' lines name no host:
// every registry connects from 127.0.0.1.
func (w *World) Diagnose(since time.Time) string {
	const max = 30
	var b strings.Builder
	dcs := make([]string, 0, len(w.Apus.Sites))
	for dc := range w.Apus.Sites {
		dcs = append(dcs, dc)
	}
	slices.Sort(dcs)
	for _, dc := range dcs {
		s := w.Apus.Sites[dc]
		lines := s.GatewayErrors(since, max)
		fmt.Fprintf(&b, "--- apus %s (%s): %d failed S3 requests and errors in %s\n", dc, s.Addr, len(lines), s.Dir+"/log/client.rgw.log")
		for _, l := range lines {
			b.WriteString(l + "\n")
		}
	}
	for _, h := range w.Hosts {
		lines := h.Reg.LogErrors(since, max)
		fmt.Fprintf(&b, "--- registry on %s (%s): %d errors and warnings in %s\n", h.Name, h.Addr, len(lines), h.Reg.LogPath)
		for _, l := range lines {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}
