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
// The periodic probe pushes a small blob to every registry instance of
// every service and reads it back (the registry package's write-then-read
// probe), on a gocron schedule. Each instance's latest result and its run
// of consecutive failures are kept in the store and exported as Prometheus
// metrics; a run of failures reaching the configured count says one notice
// naming the instance and the registry's error code, and the first pass
// after it one recovery notice. Hosts a running request has not finished
// restarting are skipped: a failure there is what the request is fixing.
//
// StatusLines gives !status a compact view of both.
package watch
