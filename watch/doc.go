// Package watch keeps an eye on what poolbot manages between requests.
//
// The drift watch follows the pooled state of every configured service's
// conftool discovery objects (/conftool/v1/discovery/<service>/<dc>): with
// the etcd backend through etcd's v2 long-poll watch, which reports every
// write with its modifiedIndex; with confctl by reading the objects every
// poll interval. A pooled change that poolbot did not make is a drift: the
// docker registries that store their blobs in the service keep cached
// connections to the old datacenter and image pushes start failing with
// BLOB_UPLOAD_UNKNOWN until they are restarted. Poolbot's own writes are
// recognised through OwnWrites, which the procedure tells of each write
// before it makes it (so a write whose answer was lost is still its own)
// and of what it left afterwards (by modifiedIndex with etcd, by value and
// time with confctl).
// Changes within one debounce window are one drift: it is recorded, logged
// to SAL through the store's outbox in the same transaction, announced with
// who made it when conftool's (or the discovery cookbook's) !log line was
// relayed in the channel, and its restarts are queued as a restart request
// (mode auto) or proposed as the one !restart command an operator runs
// (mode propose). A restart request of the service that is still queued or
// waiting covers later drifts: no second request is made.
//
// The periodic probe runs the registry package's write-then-read probe
// across hosts (ProbeAcross), on a gocron schedule: each round, for every
// instance name of every service, one host writes a small blob and reads
// it back, every other host continues an upload opened there and reads
// the blob, and the balancer (registry.balancer_url) reads it. Hosts whose
// registries use different apus sites, which each pass a probe of their
// own, fail it with the registry's BLOB_UPLOAD_UNKNOWN or BLOB_UNKNOWN.
// Each host's instance gets its own result (a host whose own write fails
// gets that, and the next host writes), the balancer one under its
// host[:port]. The latest result and the run of consecutive failures are
// kept in the store and exported as Prometheus metrics; a run of failures
// reaching the configured count says one notice naming the instance, the
// code and the failure as the registry answered (which names both hosts),
// and the first pass after it one recovery notice. Hosts a running request
// has not finished restarting are skipped, and so is the balancer then: a
// failure there is what the request is fixing; a failure of a host the
// request started restarting during the probe is dropped.
//
// StatusLines gives !status a compact view of both.
package watch
