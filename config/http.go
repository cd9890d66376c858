package config

import (
	"net"
	"strconv"
)

// DefaultHTTPListen is where `poolbot run` serves /metrics and /healthz
// unless http.listen says otherwise: loopback only, as neither needs to be
// reachable from anywhere but the host's own Prometheus agent and probes.
const DefaultHTTPListen = "127.0.0.1:9137"

// HTTPListenOff turns the HTTP server off.
const HTTPListenOff = "off"

// HTTP configures poolbot's own HTTP server (/metrics, /healthz).
type HTTP struct {
	// Listen is host:port; empty means DefaultHTTPListen under `poolbot
	// run` and no server under `poolbot console`; "off" means none.
	Listen string `yaml:"listen"`
}

// ListenAddr is where to listen, or "" for no server; console says
// whether poolbot runs with the local console.
func (h HTTP) ListenAddr(console bool) string {
	switch h.Listen {
	case HTTPListenOff:
		return ""
	case "":
		if console {
			return ""
		}
		return DefaultHTTPListen
	}
	return h.Listen
}

func (c *Config) validateHTTP(p *Problems) {
	if c.HTTP.Listen == "" || c.HTTP.Listen == HTTPListenOff {
		return
	}
	_, port, err := net.SplitHostPort(c.HTTP.Listen)
	if err != nil {
		p.add("http.listen: %q is not host:port (e.g. %s) or %q", c.HTTP.Listen, DefaultHTTPListen, HTTPListenOff)
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		p.add("http.listen: bad port in %q", c.HTTP.Listen)
	}
}
