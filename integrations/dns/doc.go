// Package dns sees a conftool discovery change reach DNS, the way
// spicerack's dnsdisc and the sre.discovery.service-route cookbook do.
//
// A conftool write moves no traffic by itself: confd rewrites gdnsd's state
// file, gdnsd answers the new address, and every recursor keeps the old
// answer until its TTL runs out. So, after the write:
//
//  1. Checker.WaitConverged asks every authoritative server once per
//     datacenter, with that datacenter's EDNS client subnet, until every
//     answer is the address Expected computes for the new pooled state
//     (after depool codfw, codfw's clients get eqiad's address), bounded by
//     ConvergeTimeout. The Report says what each server answered.
//  2. The recursor caches: Checker.FlushAndVerify runs the configured flush
//     commands and asks the configured recursors that they answer the new
//     address, or the caller waits CacheWait (the old TTL counted from the
//     moment the authoritative servers converged), resumable from a stored
//     time.
//  3. Before each host's restart, Checker.WaitHost runs `getent ahosts
//     <record>` on the host until it resolves the expected address.
//
// Errors name the server or host and the answer it got.
package dns
