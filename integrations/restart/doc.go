// Package restart runs the per-host restart of the docker registry units:
// on each registry host, `systemctl restart` of the configured units, then
// `systemctl is-active --quiet <unit>` for each unit. It does not loop over
// hosts, pace or poll health: the procedure owns that loop, because it must
// store each step before acting on it. This package gives it the pieces: a
// Plan (hosts, units, pace, per-host timeout, the command templates), an
// Executor that runs one argv on one host, and RestartHost, which runs one
// host's steps and stops at the first failure.
//
// # Executors
//
// Three executors implement Executor; the config's `executor` key picks one.
//
//   - ssh: golang.org/x/crypto/ssh straight to each host, one connection per
//     Run. Host keys are pinned through a known_hosts file (there is no
//     "accept any host key" mode); keys come from a file, optionally
//     passphrase-protected, or from the SSH agent. An SSH "exec" request
//     carries a single string that the remote sshd hands to the user's login
//     shell (`$SHELL -c <string>`), so the argv is turned into that string by
//     quoting every element with POSIX single quotes (see ShellJoin): no
//     element, whatever it contains, can become more than one shell word or
//     be interpreted by the shell. This assumes a POSIX-compatible login
//     shell (sh, dash, bash, zsh) on the remote side, as on every WMF host.
//
//   - cumin: WMF's orchestration CLI, run locally as
//     `cumin -b 1 -p 100 --force --no-progress [-t SECS] 'D{<host>}' '<command>'`
//     (behind an argv prefix such as `sudo -n`), one host per invocation:
//     the procedure owns the loop over hosts. cumin runs the command
//     through ClusterShell over SSH, so the command is the same
//     single-quoted string. cumin reports its own exit codes, not the remote
//     command's: 0 when the command succeeded on every host, 1 when it
//     completed with failures above the success threshold, 2 when it failed
//     below the threshold (with -b 1 -p 100, the only host failing gives 2),
//     4 timed out and 5 interrupted (v6 ExecutionStatus), and 2/3 for setup
//     or configuration errors, 98 for an interrupt or an aborted
//     confirmation, 99 for an unexpected exception. A host failure is
//     recognised by cumin's report line ("... of nodes failed to execute
//     command ..." or "... success ratio (< ..."); "... of nodes timeout to
//     execute command ..." is a timeout; any other non-zero exit is "could
//     not run". When the host's output is OpenSSH's own complaint
//     ("ssh: connect to host ...", "Host key verification failed.",
//     "Permission denied (publickey)."), the command never ran and Run says
//     so (a *RunError, op "connect"). Result.Output is what the command
//     printed (the lines between cumin's "----- OUTPUT of '...' -----" and
//     "================"), Result.Detail cumin's report line. With no
//     command cumin only lists the hosts a query selects (dry run): it writes
//     "N hosts will be targeted:" (stderr) and then the hosts as one
//     ClusterShell folded node set (e.g. `registry[2003-2004].codfw.wmnet`,
//     stdout); ListHosts parses that, expands the node set and checks the
//     count. cumin orders hosts by their node set, not as the query names
//     them. testdata/cumin-4.2.0 has cumin's exact output for each case,
//     checked against the installed cumin by the tests.
//
//   - local: a configured argv template run on this machine per host, with
//     `{host}` and the command substituted into whole argv elements. It is
//     for labs and for sites with their own tooling.
//
// # Errors versus failures
//
// Executor.Run separates "the command ran and exited non-zero" from "the
// command could not be run, or its outcome is unknown". The first is a nil
// error with Result.ExitCode != 0; the second is a non-nil *RunError
// (connection refused, handshake failure or host key mismatch, auth failure,
// timeout, cancellation, connection lost before the exit status arrived).
// RestartHost turns both into a *StepError naming the host and the step, so
// the procedure can say "host X: restart: exit 3: <output tail>" or
// "host X: restart: ssh: handshake failed: knownhosts: key mismatch".
package restart
