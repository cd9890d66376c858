// Package leader keeps one poolbot active among instances that share a
// configuration: the active one holds a key of its own in the conftool etcd
// (default /poolbot/leader), written with a ttl and renewed well before it
// runs out; the others are standby, poll the key and report who holds it.
//
// The key is created only if absent (prevExist=false) and renewed with a
// compare-and-swap on its modifiedIndex, so two instances can never both
// believe they hold it for longer than the ttl: an instance that misses its
// renewals (hung, partitioned, kill -9) loses the key when etcd expires it,
// and a standby takes over at its next poll, within ttl + poll interval. The
// holder itself gives up (Lost) as soon as a renewal is refused, or when it
// could not renew for a whole ttl, because then it can no longer know that
// nobody else took over.
//
// The value names the holder: {"owner": "user@host [pid]", "instance":
// "<uuid>", "since": "<RFC 3339>"}.
package leader
