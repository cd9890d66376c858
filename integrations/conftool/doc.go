// Package conftool reads and changes Wikimedia discovery records (the
// "discovery" objects of conftool) so poolbot can pool and depool a service
// such as apus per datacenter, and watches them for changes made by others.
//
// # The system
//
// conftool keeps its objects in etcd and is driven by the confctl CLI. A
// discovery object is the etcd v2 key
//
//	<prefix>/discovery/<service>/<datacenter>     e.g. /conftool/v1/discovery/apus/codfw
//
// whose value is the JSON object {"pooled": true, "references": [], "ttl": 300}
// (schema: pooled bool default false, references list default [], ttl int
// default 300). The default prefix is the namespace "/conftool" plus the API
// version "v1". confd watches <prefix>/discovery/<service> and renders the
// gdnsd state file from "pooled" and "ttl", so a write here changes DNS for
// <service>.discovery.wmnet.
//
// conftool talks to etcd through python-etcd, which speaks only the etcd v2
// keys API. A write reads the key with quorum=true, merges the changed fields
// into the stored JSON (fields it does not know are kept) and stores it with a
// compare-and-swap on the key's modifiedIndex.
//
// # Backends
//
// Two implementations of Client follow those rules:
//
//   - Etcd talks to etcd's v2 API over HTTP(S) directly: GET with
//     ?quorum=true, PUT with ?prevIndex=<modifiedIndex> and the form value
//     value=<json>, retrying a bounded number of times when etcd answers
//     errorCode 101 "Compare failed" (someone else wrote in between), then
//     reading the key back. It also implements Watcher with v2 long polls
//     (?wait=true&recursive=true&waitIndex=N) and resynchronises after
//     errorCode 401 (the requested index fell out of etcd's 1000-event
//     history) or a lost connection.
//   - Confctl runs the confctl CLI with argv only:
//     confctl [--config C] [--quiet] --object-type discovery select
//     'dnsdisc=<svc>,name=<dc>' get|set/pooled=true|false. Selector values are
//     anchored regular expressions in conftool, so service and datacenter names
//     are validated to contain no regex metacharacters; get prints one JSON
//     line per object ({"codfw": {...}, "tags": "dnsdisc=apus"}) and exactly one
//     object must match. confctl asks "Ok to continue? [y/N]" when a set
//     selects several objects; its stdin is empty so it can never be answered.
//     By default --quiet is passed, because poolbot writes its own SAL lines and
//     confctl would otherwise post a second "!log ... conftool action" line.
//
// poolbot never creates or deletes discovery objects: a missing object is an
// error (ErrNotFound), as in spicerack.
//
// # Safety
//
// Like spicerack's Discovery.depool, both backends refuse to depool the last
// pooled datacenter of a service ("Services apus cannot be depooled as they
// are only active in codfw", ErrLastPooled). The check runs against a fresh
// read right before the write (CheckDepool is exported so the command layer
// can refuse early too). etcd v2 has no multi-key transactions, so a depool
// racing with someone else's depool of the other datacenter is detected by
// the read-back after the write, and poolbot's own change is reverted
// (compare-and-swap on the index it wrote, so it never overwrites a later
// change).
package conftool
