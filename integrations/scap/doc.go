// Package scap tells poolbot whether a MediaWiki deployment (scap) is running
// and lets it keep new deployments out while it changes apus.
//
// It reads three independent signals and combines them in a Monitor:
//
//   - scap's lock files, probed with fcntl(F_GETLK). scap serialises itself
//     with POSIX record locks (Python's fcntl.lockf): every scap command takes
//     a shared lock on the global lock file (/var/lock/scap-global-lock) and
//     then an exclusive lock on its own file (for MediaWiki
//     /var/lock/scap.srv_mediawiki-staging.lock); `scap lock --all` takes the
//     global file exclusively. The files outlive the locks, so existence
//     means nothing. When scap takes an exclusive lock it overwrites the file
//     with json.dumps(info, indent=4) of
//     {"locker", "pid", "timestamp_utc", "reason"} (timestamp in Python's
//     time.asctime(time.gmtime()) form, "Thu Apr  2 14:09:39 2026"), and
//     resets it to {} on a clean release; shared holders write nothing. The
//     body is only a hint: a SIGKILLed scap leaves it behind. The fcntl probe
//     is authoritative and also yields the holder's PID.
//
//   - SpiderPig, scap's web job runner: GET /api/jobrunner/status and
//     GET /api/jobs?limit=N&skip=0. A job is running exactly when SpiderPig
//     itself says so: started_at is set, finished_at is not, and
//     status.status is not "orphaned". The API sits behind SSO plus 2FA, so
//     it is optional and needs a session cookie or a bearer token.
//
//   - The lines scap announces through logmsgbot (tcpircbot) in
//     #wikimedia-operations: "!log user@host Started scap <program>: <msg>",
//     "Finished scap <program>: <msg> (duration: MMm SSs)",
//     "<program> aborted: …", "<program> failed: …",
//     "Locking from deployment [<repo>]: …" and
//     "Unlocked for deployment [<repo>]: … (duration: …)". Only lines sent by
//     the configured relay nicks count: anyone else can type the same text.
//     tcpircbot cuts messages into 460-byte chunks, so a long Finished line can
//     arrive without its "(duration: …)" tail; the parser accepts that.
//
// To block deployments poolbot does what `scap lock --all` does: a
// non-blocking exclusive lock on the global lock file with scap-shaped JSON
// in it, or, when poolbot does not run on the deploy host, configured
// lock/unlock commands.
//
// While it holds that block, an UnlockWatcher notices a deployer's
// `scap lock --unlock-all` through scap's two signal files in /tmp and
// acknowledges it the way scap's own holder does (unlockall.go).
//
// Two properties of POSIX record locks shape this package (see Locks):
// F_GETLK never reports locks held by the calling process itself, and
// closing ANY file descriptor of a file drops every lock the process holds on
// that file. Probing a file by opening and closing it would therefore
// silently release poolbot's own deploy block. Locks owns both the probe and
// the block so the probe recognises the file it holds (by device and inode)
// and never opens it while the block is held. Nothing else in the process
// may open the global lock file while poolbot holds it.
package scap
