// Package spicerack takes and reads spicerack's distributed locks in etcd,
// so that a cookbook run and poolbot exclude each other
// (spicerack/locking.py, with python-etcd's etcd.Lock for the writer lock).
//
// A lock key is /spicerack/locks/<prefix>/<name>, prefix "cookbooks" for
// the lock spicerack takes around each cookbook run, e.g.
// /spicerack/locks/cookbooks/sre.discovery.service-route:rw. Its value is
// Python's json.dumps of a dict of concurrent holders, in insertion order:
//
//	{"4e2677c7-541a-4f9e-afbb-cfdb69c440a1": {"concurrency": 1, "created": "2023-07-16 16:46:52.161053+00:00", "owner": "user@host [12345]", "ttl": 600}}
//
// created is Python's str() of an aware UTC datetime (no fraction when the
// microseconds are zero); older spicerack wrote naive UTC without "+00:00",
// which is read as UTC too. A holder whose created + ttl has passed is
// expired and dropped by the next writer. The key is deleted when its last
// holder goes.
//
// Every read-modify-write happens under a short writer lock, python-etcd's
// lock recipe under /spicerack/locks/etcd: append an in-order key holding a
// random hex uuid with ttl 15 s, list the directory, and hold the lock when
// one's own key sorts first; otherwise delete it and retry (spicerack: 15
// tries, linear 1 s backoff). A writer that dies leaves its writer key for
// at most 15 s and its lock entry until created + ttl.
//
// Acquire adds poolbot's holder under spicerack's rules (expired holders are
// dropped; refused when the holders reach any live holder's concurrency or
// the requested one) and writes with a compare-and-swap on top of the writer
// lock. A lock held by someone else is a *HeldError naming each holder
// (owner "user@host [pid]") and its expiry; a value that spicerack itself
// could not read is a *MalformedError naming the key. Both keep the gate
// closed.
package spicerack
